"""enclave: the private AI assistant stack for networks that cannot reach the internet."""

__version__ = "0.1.0"
