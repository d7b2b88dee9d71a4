"""Who may read the journal's files: private (0600), or 0640 and owned by ``journal.group``.

The journal layer creates every file 0600; a configured group is given read access here, right
after the file exists: the database and its WAL files when the journal opens (SQLite creates
later WAL files with the database's mode and group), the checkpoint list after each checkpoint,
an export once written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from config._group import group_id
from config.errors import ConfigError

__all__ = ["GROUP_MODE", "journal_files", "share_with_group"]

GROUP_MODE = 0o640


def journal_files(path: Path) -> list[Path]:
    """The database, its WAL and shared-memory files, and its checkpoint list."""
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.checkpoints")]


def share_with_group(paths: Iterable[Path], group: str) -> None:
    """Give each existing file of ``paths`` to ``group``, mode 0640 (nothing when ``group`` is empty).

    Raises:
        ConfigError: ``journal.group`` names a group this user cannot give files to.
    """
    if not group:
        return
    gid = group_id(group)
    if gid is None:
        raise ConfigError([("journal.group", f"no group {group!r} on this host; create it or leave journal.group out")])
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        try:
            if st.st_gid != gid:
                os.chown(path, -1, gid)
            if stat.S_IMODE(st.st_mode) != GROUP_MODE:
                os.chmod(path, GROUP_MODE)
        except PermissionError as exc:
            raise ConfigError(
                [("journal.group", f"{path} cannot be given to group {group!r} ({exc.strerror}); add the user to it")]
            ) from exc
