"""The built-in tools an agent step may call (see :mod:`enclave.tasks.registry`)."""
