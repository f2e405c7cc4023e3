"""The one exception tree of enclave.

Code raises these; the gateway maps them to HTTP in one place
(``enclave.gateway.errors``) and the CLIs print them as one line.

    EnclaveError                       500 internal_error
    ├── InvalidRequest                 400 invalid_request_error
    │   └── ContextLengthExceeded      400 invalid_request_error / context_length_exceeded
    ├── AuthenticationFailed           401 authentication_error
    ├── Forbidden                      403 permission_error
    ├── ModelNotFound                  404 invalid_request_error / model_not_found
    ├── NotFound                       404 invalid_request_error / not_found (a user, a key)
    ├── Conflict                       409 invalid_request_error / conflict (a name in use)
    ├── PayloadTooLarge                413 invalid_request_error / payload_too_large
    ├── RetryLater                     carries Retry-After
    │   ├── TooManyRequests            429 requests
    │   │   ├── QueueFull              429 requests / queue_full
    │   │   └── RateLimited            429 requests|tokens / rate_limit_exceeded + x-ratelimit-*
    │   └── ServiceUnavailable         503 service_unavailable
    │       ├── EngineLoading          503 engine_loading
    │       └── NoHealthyUpstream      503 no_healthy_upstream
    ├── UpstreamError                  502 upstream_error
    │   ├── UpstreamTimeout            504 upstream_timeout
    │   └── UpstreamStatusError        the upstream's own 4xx (5xx become 502), passed on
    ├── ConfigError                    bad settings file or values (CLI only)
    ├── ModelFileError                 model files: missing chunks, checksum mismatch
    ├── ClientGone                     499 client_closed_request: control flow, not a fault;
    │                                  the client hung up first (nginx's 499), no body sent
    └── ClientError                    what ``ask`` and other clients meet (enclave.client.chat):
                                       Unreachable, StatusError/AuthRefused, StreamError,
                                       ProtocolError, ImageError
"""

from __future__ import annotations


class EnclaveError(Exception):
    """Base of every error enclave raises on purpose."""

    status: int = 500
    type: str = "internal_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this error (e.g. ``Retry-After``)."""
        return {}


class InvalidRequest(EnclaveError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(EnclaveError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(EnclaveError):
    """Who is calling is known, but may not do this (a model, an address, an admin route)."""

    status = 403
    type = "permission_error"
    code = "forbidden"


class ModelNotFound(EnclaveError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(EnclaveError):
    """A named thing (user, API key, ...) does not exist."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(EnclaveError):
    """The request clashes with what exists, e.g. a user name already taken."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(EnclaveError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RetryLater(EnclaveError):
    """The request was fine but cannot be served now; ``Retry-After`` says when to retry."""

    def __init__(self, message: str, *, retry_after: int = 5, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyRequests(RetryLater):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class QueueFull(TooManyRequests):
    """Every member of the pool is at its concurrency cap and the wait queue is full."""

    code = "queue_full"


class RateLimited(TooManyRequests):
    """A key went over one of its limits (requests or tokens per minute, requests at once).

    ``rate_headers`` are the ``x-ratelimit-*`` headers of the limit (OpenAI's names);
    ``type`` is ``"tokens"`` when the tokens-per-minute limit refused, else ``"requests"``.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: int,
        rate_headers: dict[str, str] | None = None,
        type: str = "requests",
        param: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, param=param)
        self.rate_headers = dict(rate_headers or {})
        self.type = type

    def headers(self) -> dict[str, str]:
        return {**self.rate_headers, **super().headers()}


class ServiceUnavailable(RetryLater):
    status = 503
    type = "service_unavailable"


class EngineLoading(ServiceUnavailable):
    code = "engine_loading"


class NoHealthyUpstream(ServiceUnavailable):
    code = "no_healthy_upstream"


class UpstreamError(EnclaveError):
    """The upstream could not be reached or broke the protocol."""

    status = 502
    type = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "upstream_timeout"


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; we pass its status and message on."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.type = type or ("invalid_request_error" if status < 500 else "upstream_error")
        self.code = code


class ConfigError(EnclaveError):
    type = "config_error"


class ModelFileError(EnclaveError):
    type = "model_file_error"


class ClientGone(EnclaveError):
    """The client hung up before the answer was ready: the call is dropped, and the
    status (nginx's 499) only reaches the access log and the metrics."""

    status = 499
    type = "client_closed_request"

    def __init__(self, message: str = "the client closed the connection") -> None:
        super().__init__(message)
