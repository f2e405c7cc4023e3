"""Authentication building blocks, free of any web framework.

``passwords`` (argon2id), ``apikeys`` (``sk-enc-`` keys, model globs, lifetimes),
``tokens`` (web-session JWTs), ``network`` (allowlists, the client address behind
proxies) and ``ratelimit`` (per-key limits, in memory or in Redis). The gateway wires
them together (``enclave.gateway.gatekeeper`` and ``enclave.gateway.edge``).
"""
