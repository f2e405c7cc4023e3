"""The one HTTP/1.1 client connection layer: sockets, kept-alive pools, response parsing.

asyncio protocols with the httptools (llhttp) parser, hand-written because httpx cost
about 650 µs of CPU per proxied call (a bare socket exchange costs 54 µs). Only sockets
live here; what a caller makes of a response is its own:

- :mod:`~enclave.http1.origin`: where to connect (host, port, TLS, path prefix) and the
  bytes of a request;
- :mod:`~enclave.http1.connection`: :class:`Connection`, the protocol base that owns the
  socket and the parser, and :class:`ConnectionPool`, kept-alive connections to one origin;
- :mod:`~enclave.http1.client`: :class:`Client`, JSON requests whose responses are read
  whole or chunk by chunk (the upstream client, :mod:`enclave.upstream.openai`).

The load generators (:mod:`enclave.bench.client`, ``bench/loadgen.py``) subclass
:class:`Connection` to time and parse each chunk in the protocol's callbacks. This layer
imports only :mod:`enclave.errors`; ``ask`` (:mod:`enclave.client`) does not use it.
"""

from enclave.http1.client import Client, Response
from enclave.http1.connection import Connection, ConnectionPool
from enclave.http1.origin import Origin, message

__all__ = ["Client", "Connection", "ConnectionPool", "Origin", "Response", "message"]
