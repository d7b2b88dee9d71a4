"""``journal.group``: the group that may read the journal's files, checked on this host at load."""

from __future__ import annotations

import grp
import os

__all__ = ["group_id", "group_problem"]


def group_id(name: str) -> int | None:
    """The gid of group ``name`` on this host, or ``None`` when there is none."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def group_problem(name: str) -> str | None:
    """Why the journal's files cannot be given to group ``name`` by this user, or ``None`` when they can.

    Giving a file to a group (``chown :group``) needs root or membership of that group.
    """
    gid = group_id(name)
    if gid is None:
        return (
            f"no group {name!r} on this host; create it (groupadd {name}) or leave journal.group out (files stay 0600)"
        )
    if os.geteuid() != 0 and gid not in (os.getegid(), *os.getgroups()):
        return (
            f"this user is not a member of group {name!r}, so the journal's files cannot be given to it; "
            f"add the user to the group (usermod -aG {name} USER) or leave journal.group out"
        )
    return None
