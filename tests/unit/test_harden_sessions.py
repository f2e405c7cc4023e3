"""The parts of section 4 that need no server: session tokens name their session, a
user's policy and a key's both bound a caller's models, and a policy's fields."""

from __future__ import annotations

import jwt
import pytest

from enclave.auth import tokens
from enclave.errors import AuthenticationFailed, Forbidden, InvalidRequest
from enclave.gateway.access import ModelScope
from enclave.gateway.gatekeeper import Principal
from enclave.identity import UserPolicy

KEY = b"k" * 32


def test_tokens_carry_their_session_and_one_without_is_refused() -> None:
    token = tokens.issue(KEY, user="a", role="user", ttl_s=60, kind="refresh", session="s1",
                         jti="j1")  # fmt: skip
    claims = tokens.decode(KEY, token, "refresh")
    assert (claims.session, claims.jti) == ("s1", "j1")
    old = {"sub": "a", "role": "user", "typ": "access", "iat": 1, "exp": 2**40, "jti": "j"}
    with pytest.raises(AuthenticationFailed):  # issued before sessions were revocable
        tokens.decode(KEY, jwt.encode(old, KEY, "HS256"), "access")


def test_a_model_must_be_allowed_by_the_key_and_by_its_user() -> None:
    both = Principal(user="u", role="user", key_prefix="abcd2345", models=("fake*",),
                     user_models=("*-model",))  # fmt: skip
    assert ModelScope(both).allows("fake-model")
    assert not ModelScope(both).allows("fake-other")  # the user's policy refuses
    assert not ModelScope(both).allows("other-model")  # the key's refuses
    session = Principal(user="u", role="user", session="s", user_models=("fake*",))
    assert not ModelScope(session).allows("other-model")
    with pytest.raises(Forbidden, match="this session may not use the model other"):
        ModelScope(session).check("other-model")
    assert ModelScope(Principal(user="u", role="user", session="s")).allows("anything")


def test_a_policy_sets_only_what_is_given_and_zero_lifts_a_limit() -> None:
    assert UserPolicy().values() == {}
    assert UserPolicy(models=["a*"], rpm=0, tpm=5).values() == {
        "models": ["a*"],
        "rpm": None,
        "tpm": 5,
    }
    with pytest.raises(InvalidRequest, match="rpm must be 0"):
        UserPolicy(rpm=-1).values()
