"""What the directory is asked, and how: the Manager's filters, paged searches, a user's groups."""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Literal

from ldap3 import BASE, SUBTREE, Connection
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars

from adapters.ldap._errors import SYSTEM
from config.errors import Rejected
from config.model import LdapSpec

__all__ = [
    "GROUP_FILTER",
    "MEMBERSHIP_FILTER",
    "USER_FILTER",
    "USER_SEARCH_FILTER",
    "under",
    "exists",
    "search",
    "find_user",
    "groups_of",
    "quietly_close",
]

# The Management Node's default group and membership filters (pexip-api.md 7.16): the
# orchestrator resolves a user's groups exactly as the Manager will.
GROUP_FILTER = (
    "(|(objectclass=group)(objectclass=groupOfNames)(objectclass=groupOfUniqueNames)(objectclass=posixGroup))"
)
MEMBERSHIP_FILTER = "(|(member={userdn})(uniquemember={userdn})(memberuid={useruid}))"
# A user by name: OpenLDAP's uid or Active Directory's sAMAccountName (and userPrincipalName for a
# UPN). No "(!(objectclass=computer))": OpenLDAP, which has no such class, finds no one with it
# (the negation of an undefined assertion is undefined); AD computer names end in "$" anyway.
USER_FILTER = "(objectclass=person)"
USER_SEARCH_FILTER = "(|(uid={username})(sAMAccountName={username}))"
_PAGE = 500  # entries per page of a search (Active Directory answers at most 1000)
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
_TRUNCATED = (3, 4)  # timeLimitExceeded, sizeLimitExceeded


def under(relative: str, base_dn: str) -> str:
    """The Manager's user and group search DNs are relative to its base DN."""
    return f"{relative},{base_dn}" if relative else base_dn


def groups_of(conn: Connection, ldap: LdapSpec, user: str) -> list[str]:
    """DNs of the groups ``user`` is in, under the group search DN, by the Manager's filters."""
    found = find_user(conn, ldap, user)
    if found is None:
        return []
    dn, uid = found
    membership = MEMBERSHIP_FILTER.replace("{userdn}", escape_filter_chars(dn)).replace(
        "{useruid}", escape_filter_chars(uid)
    )
    entries = search(conn, under(ldap.group_search_dn, ldap.base_dn), f"(&{GROUP_FILTER}{membership})", [])
    return [entry_dn for entry_dn, _ in entries]


def find_user(conn: Connection, ldap: LdapSpec, user: str) -> tuple[str, str] | None:
    """The DN and ``uid`` of ``user``, or None when the directory has no such user."""
    given = user.strip()
    if not given:
        return None
    if "=" in given:  # a DN: the entry itself, if it is a user
        entries = search(conn, given, USER_FILTER, ["uid"], scope=BASE)
    else:
        forms = dict.fromkeys((given, given.split("@", 1)[0]))
        alternatives = "".join(USER_SEARCH_FILTER.replace("{username}", escape_filter_chars(f)) for f in forms)
        if "@" in given:
            alternatives += f"(userPrincipalName={escape_filter_chars(given)})"
        wanted = f"(&{USER_FILTER}(|{alternatives}))"
        entries = search(conn, under(ldap.user_search_dn, ldap.base_dn), wanted, ["uid"])
    if not entries:
        return None
    if len(entries) > 1:
        raise Rejected(
            f"user {user!r} matches {len(entries)} entries in the directory ({', '.join(d for d, _ in entries)}); "
            "the Manager would refuse such a login: make the name unique",
            system=SYSTEM,
        )
    dn, attributes = entries[0]
    uids = attributes.get("uid") or [given.split("@", 1)[0]]
    return dn, str(uids[0])


def exists(conn: Connection, dn: str, search_filter: str) -> bool:
    """Whether the entry ``dn`` exists and matches ``search_filter`` (a base search)."""
    return bool(search(conn, dn, search_filter, [], scope=BASE))


def search(
    conn: Connection,
    base: str,
    search_filter: str,
    attributes: list[str],
    *,
    scope: Literal["BASE", "LEVEL", "SUBTREE"] = SUBTREE,
) -> list[tuple[str, dict[str, Any]]]:
    """Every ``(dn, attributes)`` found, page by page; an absent base is no entries."""
    found: list[tuple[str, dict[str, Any]]] = []
    cookie: bytes | None = None
    while True:
        try:
            conn.search(
                base, search_filter, search_scope=scope, attributes=attributes, paged_size=_PAGE, paged_cookie=cookie
            )
        except (lx.LDAPNoSuchObjectResult, lx.LDAPInvalidDNSyntaxResult):
            return []
        found.extend(
            (e["dn"], dict(e.get("attributes") or {})) for e in conn.response or [] if e["type"] == "searchResEntry"
        )
        if conn.result.get("result") in _TRUNCATED:  # ldap3 raises neither: an answer cut short looks whole
            raise Rejected(
                f"search under {base}: the directory stopped after {len(found)} entries "
                f"({conn.result.get('description')}), so the answer would be incomplete; raise the limits of the "
                "service account ldap.bind_username (OpenLDAP: olcLimits size.prtotal; Active Directory: "
                "MaxPageSize)",
                system=SYSTEM,
            )
        controls = conn.result.get("controls") or {}
        cookie = controls.get(_PAGED_RESULTS, {}).get("value", {}).get("cookie")
        if not cookie:
            return found


def quietly_close(conn: Connection) -> None:
    """Unbind and close; a connection already broken has nothing left to say."""
    with contextlib.suppress(lx.LDAPException, OSError):
        conn.unbind()
    # ldap3 leaves the socket of a connect that failed open (no unbind closes it): close it here.
    sock = getattr(conn, "socket", None)
    if isinstance(sock, socket.socket):
        sock.close()
