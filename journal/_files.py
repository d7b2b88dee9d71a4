"""Files the journal writes: created private (0600), replaced atomically.

A file written with :func:`atomic_write` is complete or absent: the bytes go to a
temporary file in the same directory, are fsynced, and the temporary file is renamed
over the target (then the directory is fsynced). A process killed at any instant
leaves the previous file, or the new one, never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TextIO

from config.errors import JournalError

__all__ = ["PRIVATE_MODE", "create_private", "atomic_write", "atomic_text", "append_line", "fsync_dir"]

PRIVATE_MODE = 0o600


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so a rename or a new file in it survives a power loss."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 when it does not exist (never truncating)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise JournalError(f"{path}: cannot be created ({exc})") from exc
    os.close(fd)
    fsync_dir(path.parent)


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, mode: int = PRIVATE_MODE) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temporary file: complete on success, untouched on failure.

    Example::

        with atomic_write("out.jsonl") as f:
            f.write(b"...")
    """
    import tempfile  # here, not at the top: reading a journal (`status`) starts without it (#11)

    target = Path(path)
    directory = target.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise JournalError(f"{target}: cannot write a temporary file in {directory} ({exc})") from exc
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


@contextmanager
def atomic_text(path: str | os.PathLike[str], *, mode: int = PRIVATE_MODE) -> Iterator[TextIO]:
    """:func:`atomic_write` for text (UTF-8, ``newline=""`` so CSV rows stay as written)."""
    import io

    with atomic_write(path, mode=mode) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=True)
        try:
            yield text
            text.flush()
        finally:
            text.detach()


def append_line(path: Path, line: str) -> None:
    """Append one line to ``path`` (created 0600) and fsync it."""
    existed = path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
    except OSError as exc:
        raise JournalError(f"{path}: cannot be opened for appending ({exc})") from exc
    try:
        data = (line + "\n").encode()
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    if not existed:
        fsync_dir(path.parent)
