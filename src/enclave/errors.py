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
    ├── RequestTimeout                 408 invalid_request_error / request_timeout (slow body)
    ├── RetryLater                     carries Retry-After
    │   ├── TooManyRequests            429 requests
    │   │   ├── QueueFull              429 requests / queue_full
    │   │   └── RateLimited            429 requests|tokens / rate_limit_exceeded + x-ratelimit-*
    │   └── ServiceUnavailable         503 service_unavailable
    │       ├── EngineLoading          503 engine_loading
    │       ├── NoHealthyUpstream      503 no_healthy_upstream
    │       ├── AuditUnavailable       503 audit_unavailable (strict audit could not commit)
    │       └── DirectoryUnavailable   503 directory_unavailable (auth.ldap cannot be asked)
    ├── UpstreamError                  502 upstream_error
    │   ├── UpstreamTimeout            504 upstream_timeout
    │   ├── ConnectionClosed           502 upstream_error: the server closed the connection
    │   └── UpstreamStatusError        the upstream's own 4xx (5xx become 502), passed on
    ├── ConfigError                    bad settings file or values (CLI only)
    │   └── AskConfigError             ask.toml, a role or api_key_command unusable (also AskError)
    ├── ModelFileError                 model files: missing chunks, checksum mismatch
    │   └── MissingChunk               model_file_error / missing_chunk (worded by ModelStore)
    ├── AuditTampered                  500 audit_tampered (the chain is broken: nothing pruned)
    ├── BenchError                     bench_error (the endpoint refuses a first request)
    ├── BundleError                    bundle_error (enclave bundle: no wheel, no Docker daemon)
    ├── ClientGone                     499 client_closed_request: control flow, not a fault;
    │                                  the client hung up first (nginx's 499), no body sent
    └── AskError                       what ``ask`` tells its user: one line, exit ``exit_code`` (2)
        ├── AttachmentError            a file or stdin cannot be attached (not text, unreadable)
        │   └── ClipboardError         --clip / :clip: no tool, no display, empty clipboard
        ├── HistoryError               the conversation history file cannot be used
        └── ClientError                a call to the server failed (enclave.client.chat; exit 1)
            ├── Unreachable            nothing answers at the URL (exit 2)
            ├── StatusError            the server answered 4xx/5xx: status and error.message
            │   └── AuthRefused        401: the API key was refused
            ├── StreamError            an error event arrived in the middle of a stream
            ├── ProtocolError          the answer is not what the OpenAI protocol says
            └── ImageError             an image cannot be read or is not an image (exit 2)

The ``AskError`` family is raised on the client side and never becomes an HTTP response
(``status`` stays 500); ``ask`` catches ``AskError`` in one place
(``enclave.client.app.run``) and prints ``ask: <one line>``. Its REPL leaves on a private
control-flow exception (``enclave.client.repl.Leave``), not an error of this tree.
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


class RequestTimeout(EnclaveError):
    """The client took too long to send its request (``server.body_timeout_s``); the
    connection is closed after the answer, the rest of the body unread."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


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


class CallerBackoff(TooManyRequests):
    """This caller's own requests kept making a member fail: it (not everyone) waits."""

    code = "caller_backoff"


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


class AuditUnavailable(ServiceUnavailable):
    """An audit record could not be committed (strict mode fails the call with 503)."""

    code = "audit_unavailable"


class DirectoryUnavailable(ServiceUnavailable):
    """The company directory (``auth.ldap``) could not be asked: no server answered, or it
    refused the search account. Local users can still sign in."""

    code = "directory_unavailable"


class UpstreamError(EnclaveError):
    """The upstream could not be reached or broke the protocol."""

    status = 502
    type = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "upstream_timeout"


class ConnectionClosed(UpstreamError):
    """The server closed the connection; ``answered`` says whether a response had begun."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


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


class MissingChunk(ModelFileError):
    """A bundled model's chunk is not installed; ``ModelStore`` words the user's error."""

    code = "missing_chunk"

    def __init__(self, label: str, detail: str = "is not installed") -> None:
        super().__init__(f"{label} {detail}")
        self.label = label
        self.detail = detail


class AuditTampered(EnclaveError):
    """The chain is broken where an operation needs it whole (e.g. before pruning)."""

    type = "audit_tampered"


class BenchError(EnclaveError):
    """The benchmark cannot run (the endpoint refuses even a first request...)."""

    type = "bench_error"


class BundleError(EnclaveError):
    """An offline bundle cannot be built (pip cannot find a wheel, no Docker daemon...)."""

    type = "bundle_error"


class ClientGone(EnclaveError):
    """The client hung up before the answer was ready: the call is dropped, and the
    status (nginx's 499) only reaches the access log and the metrics."""

    status = 499
    type = "client_closed_request"

    def __init__(self, message: str = "the client closed the connection") -> None:
        super().__init__(message)


# --- the ask client -------------------------------------------------------------------


class AskError(EnclaveError):
    """What ``ask`` reports to its user: ``str()`` is one readable line; the process
    exits with ``exit_code`` (2: usage, settings, attachments, history, unreachable)."""

    type = "ask_error"
    exit_code = 2


class AskConfigError(ConfigError, AskError):
    """``ask.toml``, a role or ``api_key_command`` is unusable (enclave.client.askconfig)."""


class AttachmentError(AskError):
    """A file or stdin cannot be attached (unreadable, binary)."""


class ClipboardError(AttachmentError):
    """The clipboard cannot be read or is empty (``--clip``, ``:clip``)."""


class HistoryError(AskError):
    """The history file cannot be used (enclave.client.sessions)."""


class ClientError(AskError):
    """A call to an OpenAI-compatible server failed (enclave.client.chat; ask, bench)."""

    type = "client_error"
    exit_code = 1


class Unreachable(ClientError):
    """Nothing answers at the URL (connection refused, DNS, connect timeout)."""

    exit_code = 2

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class StatusError(ClientError):
    """The server answered 4xx/5xx; ``status`` and its ``error.message``."""

    def __init__(self, status: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthRefused(StatusError):
    """401: the API key was refused."""


class StreamError(ClientError):
    """An error event arrived in the middle of a stream."""


class ProtocolError(ClientError):
    """The answer is not what the OpenAI protocol says."""


class ImageError(ClientError):
    """An image file cannot be read or is not an image (caught before sending)."""

    exit_code = 2
