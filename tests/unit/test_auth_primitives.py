"""The pure parts of authentication: passwords, API keys, session tokens, addresses."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import jwt
import pytest

from enclave.auth import apikeys, network, passwords, tokens
from enclave.auth.network import Allowlist, client_ip, parse_ip
from enclave.errors import AuthenticationFailed, ConfigError, InvalidRequest

KEY = b"k" * 32
OTHER_KEY = b"o" * 32

# --- passwords ----------------------------------------------------------------------------


def test_password_hash_is_argon2id_and_verifies() -> None:
    stored = passwords.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(stored, "correct horse")
    assert not passwords.verify_password(stored, "correct horsf")
    assert not passwords.needs_rehash(stored)
    assert passwords.hash_password("correct horse") != stored  # salted


def test_verify_password_never_raises() -> None:
    stored = passwords.hash_password("correct horse")
    assert not passwords.verify_password("not a hash", "correct horse")
    assert not passwords.verify_password(stored, "")
    assert not passwords.verify_password(stored, "x" * 5000)
    assert not passwords.verify_password(None, "correct horse")  # unknown user


def test_needs_rehash_for_other_parameters() -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("correct horse")
    assert passwords.needs_rehash(weak)
    assert passwords.verify_password(weak, "correct horse")
    assert passwords.needs_rehash("garbage")


@pytest.mark.parametrize(
    ("password", "says"),
    [("", "empty"), ("short", "at least 8"), ("x" * 1025, "at most 1024")],
)
def test_password_length_is_checked(password: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as caught:
        passwords.hash_password(password)
    assert caught.value.param == "password"


def test_longest_password_is_accepted() -> None:
    stored = passwords.hash_password("é" * 1024)
    assert passwords.verify_password(stored, "é" * 1024)


# --- API keys -----------------------------------------------------------------------------


def test_new_key_format() -> None:
    made = apikeys.new_key()
    assert re.fullmatch(r"sk-enc-[a-z2-7]{8}-[A-Za-z0-9_-]{32}", made.key)
    assert made.key.startswith(f"sk-enc-{made.prefix}-")
    assert apikeys.prefix_of(made.key) == made.prefix
    assert made.secret_hash == apikeys.hash_key(made.key)
    assert re.fullmatch(r"[0-9a-f]{64}", made.secret_hash)
    assert apikeys.matches(made.secret_hash, made.key)
    assert apikeys.new_key().key != made.key


def test_matches_refuses_other_keys() -> None:
    made = apikeys.new_key()
    tampered = made.key[:-1] + ("A" if made.key[-1] != "A" else "B")
    assert not apikeys.matches(made.secret_hash, tampered)
    assert not apikeys.matches(made.secret_hash, apikeys.new_key().key)
    assert not apikeys.matches("é" * 64, made.key)  # a damaged stored hash, no exception


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sk-enc-",
        "sk-enc-abcd1234",
        "sk-enc-ABCD1234-" + "a" * 32,  # prefix is lowercase
        "sk-enc-abcd1289-" + "a" * 32,  # 8 and 9 are not base32
        "sk-enc-abcd1234-" + "a" * 31,
        "sk-enc-abcd1234-" + "a" * 33,
        "sk-enc-abcd1234-" + "a" * 31 + "=",
        " sk-enc-abcd1234-" + "a" * 32,
        "sk-abcd1234-" + "a" * 32,
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",
    ],
)
def test_prefix_of_refuses_malformed(text: str) -> None:
    assert apikeys.prefix_of(text) is None


def test_prefix_of_accepts_dashes_in_secret() -> None:
    key = "sk-enc-abcd2345-" + "-_" * 16
    assert apikeys.prefix_of(key) == "abcd2345"
    assert apikeys.label("abcd2345") == "sk-enc-abcd2345"
    assert apikeys.is_prefix("abcd2345")
    assert not apikeys.is_prefix("alice")


def test_model_allowed_globs() -> None:
    assert apikeys.model_allowed([], "anything")
    patterns = ["qwen2.5-*", "llama-3-8b"]
    assert apikeys.model_allowed(patterns, "qwen2.5-coder-1.5b-instruct")
    assert apikeys.model_allowed(patterns, "llama-3-8b")
    assert not apikeys.model_allowed(patterns, "llama-3-70b")
    assert not apikeys.model_allowed(patterns, "QWEN2.5-coder")  # case matters
    assert apikeys.model_allowed(["*"], "x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        (" 7D ", timedelta(days=7)),
        ("never", None),
        ("NEVER", None),
    ],
)
def test_parse_expiry(text: str, expected: timedelta | None) -> None:
    assert apikeys.parse_expiry(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "-1d", "1.5h", "10s", "1w", "forever"])
def test_parse_expiry_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidRequest, match=r"30d, 12h, 90m\) or 'never'"):
        apikeys.parse_expiry(text)


# --- session tokens -----------------------------------------------------------------------


def test_token_round_trip() -> None:
    token = tokens.issue(
        KEY, user="alice", role="admin", ttl_s=900, kind="access", session="s1", now=1000
    )
    assert not token.startswith(apikeys.KEY_START)
    assert apikeys.prefix_of(token) is None
    claims = tokens.decode(KEY, token, "access", now=1500)
    assert (claims.user, claims.role, claims.kind) == ("alice", "admin", "access")
    assert (claims.issued_at, claims.expires_at) == (1000, 1900)
    assert claims.jti
    again = tokens.issue(
        KEY, user="alice", role="admin", ttl_s=900, kind="access", session="s1", now=1000
    )
    assert tokens.decode(KEY, again, "access", now=1500).jti != claims.jti


def test_token_with_the_real_clock() -> None:
    token = tokens.issue(KEY, user="bob", role="user", ttl_s=60, kind="refresh", session="s1")
    assert tokens.decode(KEY, token, "refresh").user == "bob"


def _refused(token: str, kind: tokens.Kind = "access", now: float = 1500, key: bytes = KEY) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        tokens.decode(key, token, kind, now=now)
    assert caught.value.status == 401
    return caught.value.message


def _forge(payload: dict[str, object], header: dict[str, object] | None = None) -> str:
    def part(data: dict[str, object]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def test_token_failures_all_say_the_same() -> None:
    access = tokens.issue(
        KEY, user="alice", role="admin", ttl_s=900, kind="access", session="s1", now=1000
    )
    refresh = tokens.issue(
        KEY, user="alice", role="admin", ttl_s=900, kind="refresh", session="s1", now=1000
    )
    good = {
        "sub": "a",
        "role": "admin",
        "typ": "access",
        "iat": 1000,
        "exp": 9999,
        "jti": "j",
        "sid": "s",
    }
    messages = {
        _refused(access, now=1900),  # expired, at the second
        _refused(access, now=10_000),
        _refused(access, key=OTHER_KEY),  # bad signature
        _refused(access[:-2] + ("AA" if access[-2:] != "AA" else "BB")),
        _refused(refresh, "access"),  # wrong kind, both ways
        _refused(access, "refresh"),
        _refused("garbage"),
        _refused(""),
        _refused("sk-enc-abcd2345-" + "a" * 32),
        _refused(_forge(good)),  # alg none
        _refused(jwt.encode({k: v for k, v in good.items() if k != "jti"}, KEY, "HS256")),
        _refused(jwt.encode({**good, "typ": "admin"}, KEY, "HS256")),
        _refused(jwt.encode({**good, "exp": "9999"}, KEY, "HS256")),
        _refused(jwt.encode({**good, "sub": 7}, KEY, "HS256")),
        _refused(jwt.encode(good, KEY * 2, "HS512")),  # another algorithm
    }
    assert messages == {tokens.REFUSED}


def test_short_signing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        tokens.issue(b"short", user="a", role="user", ttl_s=60, kind="access", session="s1")


# --- addresses ----------------------------------------------------------------------------


def test_allowlist_ipv4_and_ipv6() -> None:
    allow = Allowlist(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"])
    assert allow.allows("10.1.2.3")
    assert allow.allows("192.168.1.7")
    assert not allow.allows("192.168.1.8")
    assert allow.allows("2001:db8::1")
    assert allow.allows("2001:DB8:0:0::ff")
    assert not allow.allows("2001:db9::1")
    assert allow.allows("::ffff:10.9.9.9")  # IPv4-mapped IPv6, as dual-stack sockets give
    assert allow.allows("[2001:db8::1]:443")
    assert allow.allows("10.0.0.1:5678")
    assert not allow.allows("unknown")
    assert not allow.allows("")


def test_allowlist_mapped_network_matches_ipv4() -> None:
    allow = Allowlist(["::ffff:10.0.0.0/104"])
    assert allow.allows("10.2.3.4")
    assert allow.allows("::ffff:10.2.3.4")
    assert not allow.allows("11.0.0.1")


def test_empty_allowlist_allows_all_and_contains_none() -> None:
    empty = Allowlist([])
    assert not empty
    assert empty.allows("8.8.8.8")
    assert empty.allows("unknown")
    assert not empty.contains("8.8.8.8")


def test_allowlist_host_bits_and_loopback() -> None:
    allow = Allowlist(["10.1.2.3/8", "127.0.0.1", "::1"])
    assert allow.allows("10.200.0.1")
    assert allow.allows("127.0.0.1")
    assert allow.allows("::1")
    assert not allow.allows("127.0.0.2")


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-an-ip", "", "10.0.0", "::1/129"])
def test_bad_cidr_is_a_config_error_naming_it(bad: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(repr(bad))) as caught:
        Allowlist(["10.0.0.0/8", bad], name="auth.allow")
    assert "auth.allow" in caught.value.message


def test_parse_ip() -> None:
    assert str(parse_ip("::ffff:192.0.2.1")) == "192.0.2.1"
    assert str(parse_ip("fe80::1%eth0")) == "fe80::1"
    assert parse_ip("unknown") is None
    assert parse_ip("1.2.3.4:99999999") is None


PROXIES = ["10.0.0.0/8", "fd00::/8"]


def test_direct_client_without_proxy() -> None:
    assert client_ip("203.0.113.5", [], PROXIES) == "203.0.113.5"


def test_spoofed_xff_from_untrusted_peer_is_ignored() -> None:
    assert client_ip("203.0.113.5", ["1.2.3.4"], PROXIES) == "203.0.113.5"
    assert client_ip("203.0.113.5", ["10.0.0.1"], PROXIES) == "203.0.113.5"


def test_xff_believed_from_trusted_proxy() -> None:
    assert client_ip("10.0.0.2", ["203.0.113.5"], PROXIES) == "203.0.113.5"


def test_xff_chain_walked_from_the_right() -> None:
    # The client claims to be 1.1.1.1; the outer proxy appended the real address.
    chain = ["1.1.1.1, 203.0.113.5, 10.0.0.9"]
    assert client_ip("10.0.0.2", chain, PROXIES) == "203.0.113.5"
    # Several header lines count as one list, in order.
    assert client_ip("10.0.0.2", ["1.1.1.1", "203.0.113.5", "10.0.0.9"], PROXIES) == ("203.0.113.5")


def test_xff_all_trusted_gives_the_leftmost() -> None:
    assert client_ip("10.0.0.2", ["10.0.0.7, 10.0.0.8"], PROXIES) == "10.0.0.7"


def test_xff_malformed_stops_at_last_trusted_hop() -> None:
    assert client_ip("10.0.0.2", ["garbage"], PROXIES) == "10.0.0.2"
    assert client_ip("10.0.0.2", ["203.0.113.5, garbage, 10.0.0.9"], PROXIES) == "10.0.0.9"
    assert client_ip("10.0.0.2", ["unknown, 203.0.113.5"], PROXIES) == "203.0.113.5"
    assert client_ip("10.0.0.2", [" , ,"], PROXIES) == "10.0.0.2"


def test_xff_ipv6_and_mapped_addresses() -> None:
    assert client_ip("fd00::1", ["2001:db8::5"], PROXIES) == "2001:db8::5"
    assert client_ip("::ffff:10.0.0.2", ["203.0.113.5"], PROXIES) == "203.0.113.5"
    assert client_ip("fd00::1", ["[2001:db8::5]:4711"], PROXIES) == "2001:db8::5"
    assert client_ip("::ffff:203.0.113.5", [], PROXIES) == "203.0.113.5"


def test_no_trusted_proxies_means_xff_never_counts() -> None:
    assert client_ip("10.0.0.2", ["203.0.113.5"], []) == "10.0.0.2"
    assert client_ip("10.0.0.2", ["203.0.113.5"], Allowlist([])) == "10.0.0.2"


def test_unknown_peer() -> None:
    assert client_ip(None, ["203.0.113.5"], PROXIES) == ""
    assert client_ip("testclient", ["203.0.113.5"], PROXIES) == "testclient"
    assert network.client_ip("10.0.0.2", ["203.0.113.5"], Allowlist(PROXIES)) == "203.0.113.5"
