"""The encrypted store of the Conferencing Nodes' bootstrap files (adapters/bootstrap_store.py)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from adapters.bootstrap_store import BootstrapStore, bootstrap_dir, decode_key, new_key_text
from config.errors import Rejected
from config.secrets import Secret

BODY = b'{"node_config": {"name": "conf-1"}, "provisioning_secret": "MARKER-4f1d9c"}'


def _key(tmp_path: Path, text: str | None = None, name: str = "key") -> Secret:
    path = tmp_path / name
    path.write_text(text if text is not None else new_key_text())
    return Secret(f"file:{path}")


def _store(tmp_path: Path, key: Secret | None, deployment: str = "dep") -> BootstrapStore:
    return BootstrapStore(bootstrap_dir(tmp_path / "orchestrator.journal.sqlite"), key, deployment)


def test_a_stored_file_reads_back_verbatim_with_its_digest(tmp_path: Path) -> None:
    """put then get returns the very bytes; sha256 is the digest of those bytes; delete makes it lost."""
    import hashlib

    store = _store(tmp_path, _key(tmp_path))
    assert store.get("conf-1") is None and store.sha256("conf-1") is None
    assert store.put("conf-1", BODY) == hashlib.sha256(BODY).hexdigest()
    assert store.get("conf-1") == BODY and store.sha256("conf-1") == hashlib.sha256(BODY).hexdigest()
    store.delete("conf-1")
    assert store.get("conf-1") is None


def test_the_file_is_private_and_not_plain_text(tmp_path: Path) -> None:
    """The directory beside the journal is 0700, the file 0600, and neither the marker nor the JSON shows."""
    store = _store(tmp_path, _key(tmp_path))
    store.put("conf-1", BODY)
    path = store.path("conf-1")
    assert path.parent == tmp_path / "orchestrator.journal.sqlite.bootstrap"
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    raw = path.read_bytes()
    assert b"MARKER-4f1d9c" not in raw and b"node_config" not in raw
    assert base64.b64encode(b"MARKER-4f1d9c")[:12] not in raw


def test_another_key_or_a_swapped_file_does_not_decrypt(tmp_path: Path) -> None:
    """A file read with another key, or copied to another node's name, is refused, not returned."""
    store = _store(tmp_path, _key(tmp_path))
    store.put("conf-1", BODY)
    with pytest.raises(Rejected, match="does not decrypt"):
        _store(tmp_path, _key(tmp_path, name="other")).get("conf-1")
    store.path("conf-2").write_bytes(store.path("conf-1").read_bytes())
    with pytest.raises(Rejected, match="does not decrypt"):
        store.get("conf-2")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (None, "bootstrap_key is not set"),  # no key configured
        ("c2hvcnQ=", "5 bytes, not 32"),  # base64 of the wrong length
        ("not a key at all!", "not base64 or hex"),  # neither form
    ],
)
def test_an_unusable_key_is_refused_without_showing_it(tmp_path: Path, text: str | None, fragment: str) -> None:
    """A missing or malformed key stops the store with the field and the fix, never the value."""
    store = _store(tmp_path, None if text is None else _key(tmp_path, text))
    with pytest.raises(Rejected, match=fragment) as caught:
        store.put("conf-1", BODY)
    assert "pexip_api.bootstrap_key" in str(caught.value)
    if text:
        assert text not in str(caught.value)


def test_hex_and_base64_keys_are_the_same_key() -> None:
    """64 hex digits and base64 (standard or URL-safe, padded or not) of 32 bytes all decode."""
    raw = bytes(range(200, 232))
    for text in (raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert decode_key(text) == raw


def test_aput_stores_many_at_once_with_directory_syncs_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent aputs each return after a directory fsync that began after its own rename (durable as put),
    and those fsyncs are shared: fewer than one per file. Every file reads back with its digest."""
    import asyncio
    import hashlib

    import adapters.bootstrap_store as module

    store = _store(tmp_path, _key(tmp_path))
    names = [f"conf-{i}" for i in range(40)]
    syncs: list[set[str]] = []  # the files present in the directory when each directory fsync began
    real = module._fsync_directory

    def counted(directory: Path) -> None:
        syncs.append({p.name for p in directory.iterdir()})
        real(directory)

    monkeypatch.setattr(module, "_fsync_directory", counted)

    async def one(name: str) -> str:
        digest = await store.aput(name, BODY + name.encode())
        assert any(f"{name}.bootstrap" in seen for seen in syncs), "returned before a sync covered its rename"
        return digest

    async def main() -> list[str]:
        return await asyncio.gather(*(one(n) for n in names))

    digests = asyncio.run(main())
    assert digests == [hashlib.sha256(BODY + n.encode()).hexdigest() for n in names]
    assert all(store.get(n) == BODY + n.encode() for n in names)
    assert 1 <= len(syncs) < len(names)


def test_a_file_names_the_worker_vm_that_answered_it(tmp_path: Path) -> None:
    """A file stored for one worker_vm reads as lost for another of the node (its URI in the clear header and the
    associated data: a header edited to another URI does not decrypt); a format-1 file is taken for any."""
    store = _store(tmp_path, _key(tmp_path))
    mine, other = "/api/admin/configuration/v1/worker_vm/7/", "/api/admin/configuration/v1/worker_vm/8/"
    store.put("conf-1", BODY, mine)
    assert store.get("conf-1", mine) == BODY and store.get("conf-1", mine.rstrip("/")) == BODY
    assert store.get("conf-1", other) is None and store.sha256("conf-1", other) is None
    path = store.path("conf-1")
    path.write_bytes(path.read_bytes().replace(b"worker_vm/7", b"worker_vm/8"))
    with pytest.raises(Rejected, match="does not decrypt"):
        store.get("conf-1", other)
    store.put("conf-1", BODY)  # format 1: written before files named their worker_vm
    assert store.get("conf-1", other) == BODY
