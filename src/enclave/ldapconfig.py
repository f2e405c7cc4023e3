"""The settings of sign-in with a company directory (``auth.ldap``).

Kept apart from :mod:`enclave.config` (which imports :class:`LdapSettings`) so that
neither module grows past the size limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class LdapSettings(_Section):
    """Sign-in with the company directory (LDAP / Active Directory): a name that is no
    local user is looked up with the search account, bound to with the password given,
    and given a role from its groups (see docs/directory.md)."""

    urls: list[str] = Field(
        min_length=1, description="ldap://HOST[:PORT] or ldaps://HOST[:PORT]; several are "
        "tried in order (failover)"
    )  # fmt: skip
    start_tls: bool = Field(False, description="upgrade ldap:// connections with StartTLS")
    ca_file: Path | None = Field(None, description="CA certificates (PEM) to verify the server")
    verify: bool = Field(True, description="verify the server's TLS certificate and name")
    bind_dn: str | None = Field(
        None, description="the search account's DN; none = anonymous search"
    )
    bind_password: SecretStr | None = Field(None, description="the search account's password")
    bind_password_file: Path | None = Field(
        None, description="read the search account's password from this file"
    )
    user_base: str = Field(min_length=1, description="where users are searched (subtree)")
    user_filter: str = Field(
        "(uid={username})", description="finds the user; {username} is replaced by the name "
        "typed, escaped (Active Directory: (sAMAccountName={username}))"
    )  # fmt: skip
    name_attribute: str = Field(
        "uid", min_length=1, description="the attribute whose value names the local user "
        "(Active Directory: sAMAccountName)"
    )  # fmt: skip
    groups: Literal["memberof", "search"] = Field(
        "search", description="memberof = the user's memberOf attribute (Active Directory, "
        "OpenLDAP's memberof overlay); search = a search under group_base"
    )  # fmt: skip
    group_base: str | None = Field(None, description="where groups are searched; default user_base")
    group_filter: str = Field(
        "(|(member={dn})(uniqueMember={dn}))",
        description="finds the user's groups; {dn} is replaced by the user's DN, escaped",
    )
    role_map: dict[str, Literal["admin", "user"]] = Field(
        default_factory=dict, description="group DN or cn -> role; admin wins over user"
    )
    default_role: Literal["admin", "user"] | None = Field(
        None, description="role of a user in no mapped group; none = such users are refused"
    )
    timeout_s: float = Field(
        5.0, gt=0, le=120, description="connecting to and each answer of a directory server"
    )
    max_concurrency: int = Field(
        4, ge=1, le=64, description="directory sign-ins at once (threads); more wait"
    )

    @field_validator("urls", mode="before")
    @classmethod
    def _one_url(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("urls")
    @classmethod
    def _ldap_urls(cls, value: list[str]) -> list[str]:
        bad = [u for u in value if not u.lower().startswith(("ldap://", "ldaps://"))]
        if bad:
            raise ValueError(f"must start with ldap:// or ldaps://: {bad}")
        return value

    @model_validator(mode="after")
    def _check(self) -> LdapSettings:
        if "{username}" not in self.user_filter:
            raise ValueError("user_filter must contain {username}")
        if self.groups == "search" and "{dn}" not in self.group_filter:
            raise ValueError("group_filter must contain {dn}")
        if not self.role_map and self.default_role is None:
            raise ValueError("give role_map or default_role: no directory user could sign in")
        if self.bind_password is None and self.bind_password_file:
            try:
                value = self.bind_password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read bind_password_file: {exc.strerror}") from exc
            self.bind_password = SecretStr(value) if value else None
        if self.bind_dn and self.bind_password is None:
            raise ValueError("bind_dn needs bind_password or bind_password_file")
        return self
