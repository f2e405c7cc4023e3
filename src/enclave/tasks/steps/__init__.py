"""The built-in step kinds (see :mod:`enclave.tasks.registry`)."""
