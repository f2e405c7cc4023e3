"""Settings → a router: the embedded members, then each configured upstream.

On a reload the previous router is passed in: a member whose connection (URL, key,
connect timeout, vision) is unchanged is kept, with its breaker and in-flight count,
and only its options are updated. Upstreams no longer used are returned for closing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from enclave.config import Settings, UpstreamSettings
from enclave.router.breaker import Breaker
from enclave.router.member import Member, MemberOptions
from enclave.router.router import Router, Spec
from enclave.upstream.openai import HTTPUpstream, make_client

if TYPE_CHECKING:
    from enclave.engine.local_embeddings import LocalEmbeddingsUpstream
    from enclave.engine.runtime import Engine

ENGINE_FIRST_BYTE_S = 600.0  # a long prompt on a CPU takes minutes to read


def build_router(
    settings: Settings,
    *,
    engine: Engine | None = None,
    embedder: LocalEmbeddingsUpstream | None = None,
    previous: Router | None = None,
) -> Router:
    old = previous.specs if previous else []
    specs: list[Spec] = []
    if engine:
        specs.append(_engine_spec(settings, engine, _find(old, engine.upstream.name)))
    if embedder:
        name = settings.engine.embedding_model_name
        found = _find(old, embedder.name)
        member = found.member if found else _member(settings, embedder.name, embedder)
        specs.append(Spec(member, embeddings={name: name}))
    specs += [
        _remote_spec(settings, config, _find(old, config.name)) for config in settings.upstreams
    ]
    router = Router(specs, settings.router, default_model=settings.default_model)
    if previous is not None:  # who is being slowed down survives a reload
        router.strikes.adopt(previous.strikes)
    return router


def retired(previous: Router, current: Router) -> list[Member]:
    """Members of ``previous`` that ``current`` no longer uses (to close once idle)."""
    kept = {id(m) for m in current.members.values()}
    return [m for m in previous.members.values() if id(m) not in kept]


def _find(specs: list[Spec], name: str) -> Spec | None:
    return next((spec for spec in specs if spec.member.name == name), None)


def _member(
    settings: Settings, name: str, upstream: HTTPUpstream | LocalEmbeddingsUpstream,
    options: MemberOptions | None = None,
) -> Member:  # fmt: skip
    router = settings.router
    breaker = Breaker(
        router.breaker_failures, router.breaker_open_s,
        callers=router.breaker_callers, window_s=router.breaker_window_s,
    )  # fmt: skip
    return Member(name, upstream, options or MemberOptions(probe=False), breaker)


def _engine_spec(settings: Settings, engine: Engine, previous: Spec | None) -> Spec:
    if previous is not None:
        member = previous.member
    else:
        options = MemberOptions(
            first_byte_timeout_s=ENGINE_FIRST_BYTE_S,
            base_url=engine.base_url + "/v1",
            probe=False,  # its supervisor checks it
            tool_blocks=True,  # small local models write tool calls as JSON blocks
        )
        member = _member(settings, engine.upstream.name, engine.upstream, options)
        member.context_fn = engine.context_length
    names = settings.engine.public_names()
    return Spec(member, chat={name: name for name in names})


def _remote_spec(settings: Settings, config: UpstreamSettings, previous: Spec | None) -> Spec:
    options = MemberOptions(
        weight=config.weight,
        max_concurrency=config.max_concurrency,
        first_byte_timeout_s=config.first_byte_timeout_s,
        read_timeout_s=config.read_timeout_s,
        total_timeout_s=config.total_timeout_s,
        stream_usage=config.stream_usage,
        context_length=config.context_length,
        base_url=config.base_url,
        standby=config.standby,
    )
    connection = _connection(config)
    if previous is not None and previous.connection == connection:
        member = previous.member
        member.options = options
        member.breaker.threshold = settings.router.breaker_failures
        member.breaker.base_open_s = settings.router.breaker_open_s
        member.breaker.callers = settings.router.breaker_callers
        member.breaker.window_s = settings.router.breaker_window_s
    else:
        member = _member(settings, config.name, _upstream(config), options)
    aliases = dict(config.aliases)
    return Spec(
        member,
        chat={name: aliases.get(name, name) for name in config.public_models()},
        embeddings={name: aliases.get(name, name) for name in config.embedding_models},
        aliases=aliases,
        discover=not config.models and not config.embedding_models,  # aliases only rename
        owned_by=config.name,
        connection=connection,
    )


def _upstream(config: UpstreamSettings) -> HTTPUpstream:
    key = config.api_key.get_secret_value() if config.api_key else None
    client = make_client(config.base_url, api_key=key, connect_timeout=config.connect_timeout_s)
    return HTTPUpstream(config.name, client, vision=config.vision)


def _connection(config: UpstreamSettings) -> tuple[object, ...]:
    """What the member's HTTP client is made of: a change means a new member."""
    key = config.api_key.get_secret_value() if config.api_key else None
    return (config.base_url, key, config.connect_timeout_s, config.vision)
