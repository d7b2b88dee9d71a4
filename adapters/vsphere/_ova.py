"""Reading an OVA (or an OVF with its files) and streaming its disks to an NFC lease.

An OVA is an uncompressed tar: the OVF descriptor first, then the manifest and the
disks. Disks are read straight from the tar at their offsets, in chunks, in a worker
thread, and streamed with aiohttp: a multi-gigabyte Pexip disk is never held in memory.
"""

from __future__ import annotations

import asyncio
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.errors import ConfigError, Rejected, Timeout, Unreachable

if TYPE_CHECKING:
    import aiohttp

__all__ = ["CHUNK", "Package", "ovf_networks", "read_package", "upload_file"]

CHUNK = 1 << 20
OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"


@dataclass(frozen=True)
class Package:
    """An OVA or OVF: its descriptor and where each referenced file's bytes are."""

    path: Path
    descriptor: str
    # file name -> (file holding it, offset, size)
    files: dict[str, tuple[Path, int, int]] = field(default_factory=dict)


def read_package(location: str, field_name: str) -> Package:
    """Open ``location`` (a ``.ova`` tar, or a ``.ovf`` beside its files).

    Raises:
        ConfigError: missing or unreadable (named by ``field_name``, e.g. ``ova.management``).
    """
    if "://" in location:
        raise ConfigError(f"{location!r}: only a local .ova or .ovf path is supported; download it first", field_name)
    path = Path(location)
    if not path.is_file():
        raise ConfigError(f"OVA {location!r} does not exist; give the path of the Pexip .ova file", field_name)
    if path.suffix.lower() == ".ovf":
        descriptor = path.read_text(encoding="utf-8")
        files = {p.name: (p, 0, p.stat().st_size) for p in path.parent.iterdir() if p.is_file()}
        return Package(path=path, descriptor=descriptor, files=files)
    try:
        with tarfile.open(path, mode="r:") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            ovf = next((m for m in members if m.name.lower().endswith(".ovf")), None)
            if ovf is None:
                raise ConfigError(f"OVA {location!r} holds no .ovf descriptor; it is not an OVA", field_name)
            handle = tar.extractfile(ovf)
            assert handle is not None
            descriptor = handle.read().decode("utf-8")
            files = {Path(m.name).name: (path, m.offset_data, m.size) for m in members}
    except (tarfile.TarError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"OVA {location!r} cannot be read as an OVA (tar): {exc}", field_name) from exc
    return Package(path=path, descriptor=descriptor, files=files)


def ovf_networks(descriptor: str) -> list[str]:
    """The network names the descriptor declares (``NetworkSection/Network/@ovf:name``)."""
    try:
        root = ET.fromstring(descriptor)
    except ET.ParseError as exc:
        raise Rejected(f"the OVF descriptor is not valid XML: {exc}") from exc
    return [n.get(f"{{{OVF_NS}}}name", "") for n in root.iter(f"{{{OVF_NS}}}Network")]


async def _chunks(path: Path, offset: int, size: int, sent: Callable[[int], None]) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(open, path, "rb")
    with f:
        await asyncio.to_thread(f.seek, offset)
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, left))
            if not chunk:
                raise Rejected(f"{path}: the file ended {left} bytes early; the OVA is truncated")
            left -= len(chunk)
            sent(len(chunk))
            yield chunk


async def upload_file(
    http: aiohttp.ClientSession,
    url: str,
    package: Package,
    name: str,
    *,
    create: bool,
    ssl: Any,
    cookie: str,
    sent: Callable[[int], None],
) -> None:
    """Stream one file of the package to a lease URL (PUT for a disk to create, else POST)."""
    import aiohttp  # here: only an import needs it, and it costs about 0.3 s to load

    if name not in package.files:
        raise Rejected(f"the OVF descriptor of {package.path} references {name!r}, which the OVA does not hold")
    path, offset, size = package.files[name]
    headers = {
        "Content-Type": "application/x-vnd.vmware-streamVmdk",
        "Content-Length": str(size),
        "Cookie": cookie.split(";", 1)[0],  # the session pair only, not its attributes
    }
    method = "PUT" if create else "POST"
    try:
        async with http.request(method, url, data=_chunks(path, offset, size, sent), headers=headers, ssl=ssl) as resp:
            if resp.status >= 300:
                text = (await resp.text())[:200]
                raise Rejected(f"upload of {name} to the lease was refused: HTTP {resp.status} {text}")
    except TimeoutError as exc:
        raise Timeout(f"upload of {name} to {url.split('/nfc/')[0]} timed out") from exc
    except aiohttp.ServerFingerprintMismatch as exc:
        raise Rejected(f"upload of {name}: the host's certificate does not match vcenter.thumbprint") from exc
    except aiohttp.ClientSSLError as exc:
        raise Rejected(
            f"upload of {name}: the host's TLS certificate is not trusted ({exc}); "
            "set vcenter.ca_file to a CA that signed the ESXi hosts' certificates too"
        ) from exc
    except aiohttp.ClientError as exc:
        raise Unreachable(f"upload of {name}: {type(exc).__name__}: {exc}") from exc
