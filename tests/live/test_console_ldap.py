"""Sign-in with the company directory: a real `enclave serve` with `auth.ldap` pointing at
a real OpenLDAP server (Debian's slapd, started by tests/ldapserver.py), signing in over
HTTP as the console does. The directory's first URL is a dead port, so every sign-in here
also goes through the failover to the second."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from enclave.auth.ldap import Directory
from enclave.errors import DirectoryUnavailable
from enclave.ldapconfig import LdapSettings
from tests.fakes.procs import FakeUpstream, free_port
from tests.gateway import Gateway, add_user, audit_records, cli, run_gateway
from tests.ldapserver import (
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    LdapServer,
    available,
    group,
    person,
)

pytestmark = [
    pytest.mark.fake_upstream(models=["fake-model"]),
    pytest.mark.skipif(not available(), reason="Debian's slapd is not installed (/usr/sbin/slapd)"),
]

ROOT_PASSWORD = "correct horse battery staple"
ATTEMPTS = 3  # auth.login_attempts


@pytest.fixture(scope="module")
def directory() -> Iterator[LdapServer]:
    server = LdapServer.start()
    try:
        yield server
    finally:
        server.stop()


def ldap_settings(urls: list[str] | None = None, **more: Any) -> dict[str, Any]:
    return {
        "urls": urls,
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_base": PEOPLE,
        "group_base": GROUPS,
        "role_map": {"admins": "admin", group("staff"): "user"},
        "timeout_s": 3,
        **more,
    }


def gateway_config(fake: FakeUpstream, ldap: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": {"mode": "on", "login_attempts": ATTEMPTS, "lockout_s": 120, "ldap": ldap},
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}],
    }


@pytest.fixture(scope="module")
def gateway(
    fake: FakeUpstream, directory: LdapServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    dead = f"ldap://127.0.0.1:{free_port()}"
    config = gateway_config(fake, ldap_settings([dead, directory.url]))
    with run_gateway(tmp_path_factory.mktemp("ldap"), config) as gw:
        add_user(gw, "root", "admin", ROOT_PASSWORD)
        yield gw


def post(gateway: Gateway, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(gateway.url + path, json=body, headers=headers, trust_env=False, timeout=60)


def get(gateway: Gateway, path: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(gateway.url + path, headers=headers, trust_env=False, timeout=60)


def login(gateway: Gateway, name: str, password: str) -> httpx.Response:
    return post(gateway, "/api/auth/login", {"username": name, "password": password})


def signed_in(gateway: Gateway, name: str, password: str) -> dict[str, str]:
    reply = login(gateway, name, password)
    assert reply.status_code == 200, reply.text
    tokens: dict[str, str] = reply.json()
    return tokens


def role_of(gateway: Gateway, tokens: dict[str, str]) -> str:
    reply = get(gateway, "/api/auth/me", tokens["access_token"])
    assert reply.status_code == 200, reply.text
    role: str = reply.json()["role"]
    return role


def users(gateway: Gateway) -> dict[str, dict[str, Any]]:
    token = signed_in(gateway, "root", ROOT_PASSWORD)["access_token"]
    reply = get(gateway, "/api/admin/users", token)
    assert reply.status_code == 200, reply.text
    return {u["name"]: u for u in reply.json()["data"]}


def test_a_member_of_the_admins_group_signs_in_as_an_administrator(gateway: Gateway) -> None:
    tokens = signed_in(gateway, "alice", "alice-pw")
    assert role_of(gateway, tokens) == "admin"
    assert get(gateway, "/api/admin/users", tokens["access_token"]).status_code == 200
    alice = users(gateway)["alice"]
    assert (alice["source"], alice["role"]) == ("ldap", "admin")
    assert users(gateway)["root"]["source"] == "local"
    logins = [r for r in audit_records(gateway) if r["action"] == "login" and r["user"] == "alice"]
    assert logins
    assert logins[-1]["detail"]["source"] == "ldap"
    assert logins[-1]["detail"]["role"] == "admin"


def test_a_member_of_staff_signs_in_as_a_user_and_is_kept_out_of_admin(gateway: Gateway) -> None:
    tokens = signed_in(gateway, "bob", "bob-pw")
    assert role_of(gateway, tokens) == "user"
    assert get(gateway, "/api/admin/users", tokens["access_token"]).status_code == 403
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    assert post(gateway, "/v1/chat/completions", body, tokens["access_token"]).status_code == 200


def test_a_directory_user_in_no_mapped_group_is_refused_with_the_setting_named(
    gateway: Gateway,
) -> None:
    reply = login(gateway, "carol", "carol-pw")
    assert reply.status_code == 403, reply.text
    assert "auth.ldap.role_map" in reply.json()["error"]["message"]
    assert "carol" not in users(gateway)  # no local row for someone who may not enter


def test_a_wrong_password_is_the_same_401_as_an_unknown_name(gateway: Gateway) -> None:
    answers = [login(gateway, "dave", "wrong"), login(gateway, "nobody-here", "dave-pw")]
    assert {a.status_code for a in answers} == {401}
    assert len({a.json()["error"]["message"] for a in answers}) == 1
    failed = [r for r in audit_records(gateway) if r["action"] == "login.failed"]
    reasons = {
        r["detail"].get("reason") for r in failed if r["detail"]["name"] in ("dave", "nobody-here")
    }
    assert {"wrong password", "no such user"} <= reasons


def test_an_empty_password_never_reaches_the_directory(gateway: Gateway) -> None:
    # Many directories take a DN with an empty password as an anonymous bind, a success.
    assert login(gateway, "dave", "").status_code == 400


@pytest.mark.parametrize("name", ["*", "al*", "admin)(|(uid=*", "alice)(uid=*", "*)(cn=*"])
def test_filter_injection_in_the_user_name_matches_no_one(gateway: Gateway, name: str) -> None:
    assert login(gateway, name, "alice-pw").status_code == 401


def test_a_role_changed_in_the_directory_applies_at_the_next_sign_in(
    gateway: Gateway, directory: LdapServer
) -> None:
    before = signed_in(gateway, "bob", "bob-pw")
    directory.add_member("admins", "bob")
    try:
        promoted = signed_in(gateway, "bob", "bob-pw")
        assert role_of(gateway, promoted) == "admin"
        # The session issued with the old role ended when the role changed.
        assert post(gateway, "/api/auth/refresh", {"refresh_token": before["refresh_token"]}
                    ).status_code == 401  # fmt: skip
    finally:
        directory.remove_member("admins", "bob")
    demoted = signed_in(gateway, "bob", "bob-pw")
    assert role_of(gateway, demoted) == "user"
    assert get(gateway, "/api/admin/users", promoted["access_token"]).status_code == 401
    assert users(gateway)["bob"]["role"] == "user"


def test_a_session_ends_when_the_directory_takes_the_role_away(
    gateway: Gateway, directory: LdapServer
) -> None:
    """A tab left open keeps refreshing its session: each refresh asks the directory
    again, so an administrator removed from the admin group is out at the next one, not
    after the refresh token's week."""
    directory.add_member("admins", "dave")
    try:
        session = signed_in(gateway, "dave", "dave-pw")
        assert role_of(gateway, session) == "admin"
        again = post(gateway, "/api/auth/refresh", {"refresh_token": session["refresh_token"]})
        assert again.status_code == 200  # still an administrator: the session goes on
    finally:
        directory.remove_member("admins", "dave")
    refused = post(gateway, "/api/auth/refresh", {"refresh_token": again.json()["refresh_token"]})
    assert refused.status_code == 401
    ended = [r for r in audit_records(gateway) if r["action"] == "session.directory"]
    assert ended[-1]["user"] == "dave"
    assert ended[-1]["detail"]["reason"] == "role now user"
    assert users(gateway)["dave"]["role"] == "user"
    assert role_of(gateway, signed_in(gateway, "dave", "dave-pw")) == "user"


def test_a_directory_name_enclave_cannot_hold_is_refused(
    gateway: Gateway, directory: LdapServer
) -> None:
    """A name with "/" would share its conversations' subject with a service key's
    customer ("user/customer"): enclave takes only the names its admin API accepts."""
    conn = directory.admin()
    try:
        for uid in ("eve/alice",):
            attrs = {"cn": "Eve", "sn": "Eve", "userPassword": "eve-pw"}
            made = conn.add(person(uid), ["inetOrgPerson"], attrs)
            assert made or conn.result["description"] == "entryAlreadyExists", conn.result
            directory.add_member("staff", uid)
    finally:
        conn.unbind()
    for uid in ("eve/alice",):
        refused = login(gateway, uid, "eve-pw")
        assert refused.status_code == 403, refused.text
        assert "auth.ldap.name_attribute" in refused.json()["error"]["message"]
    assert "eve/alice" not in users(gateway)


def test_a_directory_user_disabled_here_stays_out(gateway: Gateway) -> None:
    signed_in(gateway, "dave", "dave-pw")
    token = signed_in(gateway, "root", ROOT_PASSWORD)["access_token"]
    assert post(gateway, "/api/admin/users/dave/disable", token=token).status_code == 200
    try:
        assert login(gateway, "dave", "dave-pw").status_code == 401
    finally:
        assert post(gateway, "/api/admin/users/dave/enable", token=token).status_code == 200
    signed_in(gateway, "dave", "dave-pw")


def test_a_directory_users_password_cannot_be_changed_here(gateway: Gateway) -> None:
    signed_in(gateway, "dave", "dave-pw")
    token = signed_in(gateway, "root", ROOT_PASSWORD)["access_token"]
    reply = post(gateway, "/api/admin/users/dave/password", {"password": "a-new-long-password"},
                 token)  # fmt: skip
    assert reply.status_code == 400, reply.text
    assert "auth.ldap" in reply.json()["error"]["message"]
    done = cli(gateway, "users", "passwd", "dave", "--password-stdin",
               stdin="a-new-long-password\n")  # fmt: skip
    assert done.returncode != 0
    assert "directory" in done.stderr
    signed_in(gateway, "dave", "dave-pw")


def test_failed_directory_sign_ins_lock_the_name_like_local_ones(gateway: Gateway) -> None:
    # The directory finds CAROL as carol: changing the case buys no more tries.
    for name in ("carol", "Carol", "CAROL")[:ATTEMPTS]:
        assert login(gateway, name, "not-carols").status_code == 401
    locked = login(gateway, "cArol", "carol-pw")
    assert locked.status_code == 429
    assert "auth.login_attempts" in locked.json()["error"]["message"]


def test_with_the_directory_down_its_users_get_a_clear_503_and_local_admins_get_in(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    dead = f"ldap://127.0.0.1:{free_port()}"
    config = gateway_config(fake, ldap_settings([dead]))
    with run_gateway(tmp_path / "down", config) as gw:
        add_user(gw, "root", "admin", ROOT_PASSWORD)
        reply = login(gw, "alice", "alice-pw")
        assert reply.status_code == 503, reply.text
        error = reply.json()["error"]
        assert error["code"] == "directory_unavailable"
        assert "directory" in error["message"]
        assert dead in error["message"]
        assert "auth.ldap" in error["message"]
        assert role_of(gw, signed_in(gw, "root", ROOT_PASSWORD)) == "admin"


def test_groups_read_from_memberof_map_like_a_group_search(directory: LdapServer) -> None:
    settings = LdapSettings.model_validate(
        ldap_settings([directory.url], groups="memberof", default_role="user")
    )
    found = asyncio.run(_sign_in_all(Directory(settings)))
    assert found == {"alice": "admin", "bob": "user", "carol": "user", "dave": "user"}


async def _sign_in_all(directory: Directory) -> dict[str, str | None]:
    try:
        found: dict[str, str | None] = {}
        for name in ("alice", "bob", "carol", "dave"):
            answer = await directory.authenticate(name, f"{name}-pw")
            assert answer.user is not None, answer.reason
            found[name] = answer.user.role
        return found
    finally:
        directory.aclose()


def tls_sign_in(**more: Any) -> str | None:
    """alice's role through a directory with these settings (TLS ones), or the 503."""
    directory = Directory(LdapSettings.model_validate(ldap_settings(**more)))

    async def sign_in() -> str | None:
        try:
            answer = await directory.authenticate("alice", "alice-pw")
        finally:
            directory.aclose()
        assert answer.user is not None, answer.reason
        return answer.user.role

    return asyncio.run(sign_in())


def test_ldaps_and_starttls_verify_the_certificate_and_its_name(directory: LdapServer) -> None:
    ca = str(directory.cert)
    assert tls_sign_in(urls=[directory.tls_url], ca_file=ca) == "admin"
    assert tls_sign_in(urls=[directory.url], start_tls=True, ca_file=ca) == "admin"
    # Not signed by a CA we trust, or not for the name we asked: refused, by default.
    for wrong in ({"urls": [directory.tls_url]},
                  {"urls": [directory.tls_url.replace("127.0.0.1", "localhost")], "ca_file": ca},
                  {"urls": [directory.url], "start_tls": True}):  # fmt: skip
        with pytest.raises(DirectoryUnavailable, match=r"(?i)certificate.*auth.ldap.ca_file"):
            tls_sign_in(**wrong)
    assert tls_sign_in(urls=[directory.tls_url], verify=False) == "admin"
