"""The `auth.ldap` settings and the directory's role mapping, without a directory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from enclave.auth.ldap import Directory, normal_dn, role_of
from enclave.config import Settings, masked
from enclave.ldapconfig import LdapSettings

BASE = {
    "urls": ["ldap://ldap.example.com"],
    "bind_dn": "cn=enclave,ou=services,dc=example,dc=com",
    "bind_password": "s3cret",
    "user_base": "ou=people,dc=example,dc=com",
    "role_map": {"admins": "admin"},
}


def settings(**more: Any) -> LdapSettings:
    return LdapSettings.model_validate({**BASE, **more})


def refused(**more: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(**more)
    return str(caught.value)


def test_ldap_is_off_by_default_and_a_full_section_validates() -> None:
    assert Settings().auth.ldap is None
    cfg = Settings.model_validate({"auth": {"ldap": BASE}}).auth.ldap
    assert cfg is not None
    assert (cfg.user_filter, cfg.groups, cfg.verify, cfg.default_role) == (
        "(uid={username})", "search", True, None,
    )  # fmt: skip


def test_one_url_may_be_given_as_a_string_and_only_ldap_schemes_are_taken() -> None:
    assert settings(urls="ldaps://dc1.example.com:636").urls == ["ldaps://dc1.example.com:636"]
    assert "ldap:// or ldaps://" in refused(urls=["http://ldap.example.com"])
    assert "urls" in refused(urls=[])


def test_filters_must_hold_their_placeholders() -> None:
    assert "{username}" in refused(user_filter="(uid=alice)")
    assert "{dn}" in refused(group_filter="(member=alice)")
    assert settings(groups="memberof", group_filter="(x=y)").groups == "memberof"


def test_no_role_map_and_no_default_role_would_let_no_one_in() -> None:
    assert "role_map or default_role" in refused(role_map={})
    assert settings(role_map={}, default_role="user").default_role == "user"
    assert "admin" in refused(role_map={"admins": "root"})


def test_the_search_password_comes_from_a_file_and_is_masked(tmp_path: Path) -> None:
    secret = tmp_path / "bind.pw"
    secret.write_text("from-a-file\n")
    cfg = settings(bind_password=None, bind_password_file=str(secret))
    assert cfg.bind_password is not None
    assert cfg.bind_password.get_secret_value() == "from-a-file"
    assert "bind_password" in refused(bind_password=None)
    shown = masked(Settings.model_validate({"auth": {"ldap": BASE}}))
    assert "s3cret" not in str(shown)
    assert "cannot read" in refused(bind_password=None, bind_password_file=str(tmp_path / "no"))


def test_groups_map_by_dn_or_by_cn_and_admin_wins() -> None:
    role_map: dict[str, Any] = {"CN=Admins, OU=Groups,DC=example,DC=com": "admin", "staff": "user"}
    admins, staff = "cn=admins,ou=groups,dc=example,dc=com", "cn=Staff,ou=groups,dc=example,dc=com"
    assert role_of((admins,), role_map, None) == "admin"
    assert role_of((staff,), role_map, None) == "user"
    assert role_of((staff, admins), role_map, None) == "admin"
    assert role_of(("cn=other,dc=example,dc=com",), role_map, None) is None
    assert role_of((), role_map, "user") == "user"
    assert normal_dn("CN=A\\, B , OU=X") == normal_dn("cn=a\\, b,ou=x")


def test_an_empty_password_is_refused_before_any_connection() -> None:
    # The URL leads nowhere: any attempt to bind would fail as unreachable, not refused.
    directory = Directory(settings(urls=["ldap://127.0.0.1:9"], timeout_s=1))
    try:
        answer = asyncio.run(directory.authenticate("alice", ""))
    finally:
        directory.aclose()
    assert (answer.user, answer.reason) == (None, "empty password")


def test_directory_failures_count_under_the_name_the_directory_compares() -> None:
    """A directory matches names without case, width or extra spaces (RFC 4518): so does
    the lockout, or each spelling would get its own count of guesses."""
    from enclave.identity import directory_lock_key

    spellings = ["alice", "ALICE", " alice", "alice  ", "ａｌｉｃｅ", "Ａlice"]
    assert {directory_lock_key(name) for name in spellings} == {"alice"}
    assert directory_lock_key("bob smith") == directory_lock_key(" Bob   SMITH ")
    assert directory_lock_key("alice") != directory_lock_key("alice2")
