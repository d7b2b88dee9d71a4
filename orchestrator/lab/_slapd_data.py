"""What a lab or test slapd holds: the entries shaped from a deployment's ``[ldap]`` section, as LDIF.

:func:`directory_entries`: the base DN, the service account ``ldap.bind_username`` with
``ldap.bind_password``, the user ``ldap.verify_user`` (``uid=...`` under ``ldap.user_search_dn``)
with ``ldap.verify_password``, and one ``groupOfNames`` per ``ldap.role_mappings[*].group_dn``
with the verify user as member (or the members a caller names). Passwords are stored as
``{SSHA}`` hashes, never in clear.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence

from ldap3.protocol.rfc2849 import safe_ldif_string
from ldap3.utils.dn import parse_dn

from config.model import LdapSpec

__all__ = ["Entry", "directory_entries", "ldif", "ssha", "under", "user_dn"]

Entry = tuple[str, dict[str, list[str]]]


def ssha(password: str) -> str:
    """``{SSHA}`` of ``password``: slapd compares binds against it (the clear value is never stored)."""
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def ldif(entries: Sequence[Entry]) -> str:
    """LDIF content records (RFC 2849): a value that is not safe as it is goes base64."""
    lines: list[str] = []
    for dn, attributes in entries:
        for name, values in (("dn", [dn]), *attributes.items()):
            for value in values:
                raw = value.encode()
                if safe_ldif_string(raw):  # type: ignore[no-untyped-call]
                    lines.append(f"{name}: {value}")
                else:
                    lines.append(f"{name}:: {base64.b64encode(raw).decode()}")
        lines.append("")
    return "\n".join(lines) + "\n"


def under(relative: str, base_dn: str) -> str:
    """``ldap.user_search_dn``/``group_search_dn`` are relative to the base DN (as on the Manager)."""
    return f"{relative},{base_dn}" if relative else base_dn


def user_dn(ldap: LdapSpec, uid: str | None = None) -> str:
    """The DN of a user of the test directory (default: ``ldap.verify_user``)."""
    return f"uid={uid or ldap.verify_user},{under(ldap.user_search_dn, ldap.base_dn)}"


def _rdn(dn: str) -> tuple[str, str]:
    attribute, value, _ = parse_dn(dn)[0]
    return attribute, value


def _container(dn: str) -> Entry:
    """An entry that only holds others: the base (dcObject) or an organizational unit."""
    attribute, value = _rdn(dn)
    if attribute.lower() == "dc":
        return dn, {"objectClass": ["top", "dcObject", "organization"], "dc": [value], "o": [value]}
    if attribute.lower() == "ou":
        return dn, {"objectClass": ["top", "organizationalUnit"], "ou": [value]}
    return dn, {"objectClass": ["top", "organizationalRole"], "cn": [value]}


def directory_entries(
    ldap: LdapSpec,
    *,
    members: Mapping[str, Sequence[str]] | None = None,
    users: Mapping[str, str] | None = None,
) -> list[Entry]:
    """The entries of a directory shaped like ``ldap``, parents before children.

    Args:
        ldap: the deployment's section; its passwords are read (``reveal``) to be hashed.
        members: group DN -> member DNs (default: every mapped group has the verify user); a
            group of the mappings missing here is not created (a test's missing group).
        users: more users, uid -> password, beside the verify user.
    """
    base = ldap.base_dn
    assert ldap.bind_password is not None and ldap.verify_password is not None
    if members is None:
        members = {m.group_dn: [user_dn(ldap)] for m in ldap.role_mappings}
    people = {ldap.verify_user: ldap.verify_password.reveal(), **(users or {})}
    leaves: list[Entry] = []
    bind_cn = _rdn(ldap.bind_username)[1]
    leaves.append(
        (
            ldap.bind_username,
            {
                "objectClass": ["top", "inetOrgPerson"],
                "cn": [bind_cn],
                "sn": [bind_cn],
                "userPassword": [ssha(ldap.bind_password.reveal())],
            },
        )
    )
    for uid, password in people.items():
        leaves.append(
            (
                user_dn(ldap, uid),
                {
                    "objectClass": ["top", "inetOrgPerson"],
                    "uid": [uid],
                    "cn": [uid],
                    "sn": [uid],
                    "userPassword": [ssha(password)],
                },
            )
        )
    for group, member_dns in members.items():
        # groupOfNames needs a member: an empty group holds the empty DN, as directories do.
        group_cn = _rdn(group)[1]
        leaves.append((group, {"objectClass": ["groupOfNames"], "cn": [group_cn], "member": list(member_dns) or [""]}))
    entries: dict[str, Entry] = {base.lower(): _container(base)}
    for relative in (ldap.user_search_dn, ldap.group_search_dn):
        if relative:
            dn = under(relative, base)
            entries.setdefault(dn.lower(), _container(dn))
    for dn, attributes in leaves:
        # Every parent between the base and the entry, so that slapadd finds it.
        parts = [f"{a}={v}" for a, v, _ in parse_dn(dn)]
        for i in range(len(parts) - 1, 0, -1):
            parent = ",".join(parts[i:])
            if parent.lower().endswith(base.lower()) and len(parent) > len(base):
                entries.setdefault(parent.lower(), _container(parent))
        entries[dn.lower()] = (dn, attributes)
    return sorted(entries.values(), key=lambda e: len(parse_dn(e[0])))
