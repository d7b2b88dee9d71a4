"""Reading an OVA (or an OVF with its files) and streaming its disks to an NFC lease.

An OVA is an uncompressed tar: the OVF descriptor first, then the manifest and the
disks. Disks are read straight from the tar at their offsets, in chunks, and streamed with
``http.client`` from a worker thread of the uploads' own (:class:`Uploads`): a multi-gigabyte
Pexip disk is never held in memory, and a long upload never holds up the SOAP calls' threads.
(Until issue #11 aiohttp streamed them from the event loop: its import and a TLS handshake
per disk, on the loop, were a tenth of the client's CPU for 100 VMs.)
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ssl
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from adapters.vsphere._session import PinMismatch, pinned_connection_class
from config.errors import ConfigError, Rejected, Timeout, Unreachable

__all__ = ["CHUNK", "Package", "Uploads", "map_upload_errors", "ovf_networks", "read_package"]

CHUNK = 1 << 20
IDLE_S = 20.0  # an upload connection idle longer is closed, not reused (hosts drop idle ones)
# A kept connection found closed when used: sent again on a new one.
_DROPPED = (ConnectionError, http.client.RemoteDisconnected, ssl.SSLEOFError, ssl.SSLZeroReturnError)
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


class _Slice(io.RawIOBase):
    """``size`` bytes of ``path`` from ``offset``, read as the upload sends them (never held whole)."""

    def __init__(self, path: Path, offset: int, size: int, sent: Callable[[int], None]):
        self._file = open(path, "rb")  # noqa: SIM115  # closed by close(), after the upload
        self._file.seek(offset)
        self._left = size
        self._path = path
        self._sent = sent

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        want = self._left if n is None or n < 0 else min(n, self._left)
        chunk = self._file.read(want) if want else b""
        if want and not chunk:
            raise Rejected(f"{self._path}: the file ended {self._left} bytes early; the OVA is truncated")
        self._left -= len(chunk)
        self._sent(len(chunk))
        return chunk

    def close(self) -> None:
        self._file.close()
        super().close()


class Uploads:
    """HTTPS connections to the hosts' NFC endpoints, kept open between uploads (one TLS handshake
    per connection, not per disk), used from worker threads.

    Args:
        ssl_context: the same trust as the SOAP calls (the CA context, or the pinned one).
        pin: the pinned SHA-256 digest of vCenter's certificate, checked on every new connection.
        timeout_s: socket timeout of one send or receive.
    """

    def __init__(self, ssl_context: ssl.SSLContext, pin: bytes | None, *, timeout_s: float = 300.0):
        self._ssl = ssl_context
        self._timeout_s = timeout_s
        self._idle: dict[str, list[tuple[http.client.HTTPSConnection, float]]] = {}
        self._lock = threading.Lock()
        self._class = pinned_connection_class(pin) if pin is not None else http.client.HTTPSConnection

    def _connection(self, netloc: str) -> tuple[http.client.HTTPSConnection, bool]:
        """A connection to ``netloc`` and whether it was used before (it may have been dropped since)."""
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(netloc, [])
            while idle:
                conn, since = idle.pop()
                if now - since < IDLE_S:
                    return conn, True
                conn.close()
        parts = urlsplit(f"https://{netloc}")
        return self._class(
            parts.hostname or "", parts.port or 443, context=self._ssl, timeout=self._timeout_s, blocksize=CHUNK
        ), False

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()

    def upload_sync(
        self, url: str, package: Package, name: str, *, create: bool, cookie: str, sent: Callable[[int], None]
    ) -> None:
        """Stream one file of the package to a lease URL (PUT for a disk to create, else POST); a worker thread.

        A connection kept from an earlier upload that turns out closed (the host dropped it, or restarted)
        is replaced by a new one and the file sent again from its start: nothing of it was taken.
        """
        if name not in package.files:
            raise Rejected(f"the OVF descriptor of {package.path} references {name!r}, which the OVA does not hold")
        path, offset, size = package.files[name]
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/x-vnd.vmware-streamVmdk",
            "Content-Length": str(size),
            "Cookie": cookie.split(";", 1)[0],  # the session pair only, not its attributes
        }
        with map_upload_errors(name, url.split("/nfc/")[0]):
            self._send(
                conn_key=parts.netloc,
                target=target,
                body_of=lambda: _Slice(path, offset, size, sent),
                method="PUT" if create else "POST",
                headers=headers,
                name=name,
            )

    def _send(
        self,
        *,
        conn_key: str,
        target: str,
        body_of: Callable[[], _Slice],
        method: str,
        headers: dict[str, str],
        name: str,
    ) -> None:
        while True:
            conn, reused = self._connection(conn_key)
            body = body_of()
            try:
                conn.request(method, target, body, headers)
                resp = conn.getresponse()
                text = resp.read()
                break
            except _DROPPED:
                conn.close()
                if not reused:
                    raise
            except BaseException:
                conn.close()
                raise
            finally:
                body.close()
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.setdefault(conn_key, []).append((conn, time.monotonic()))
        if resp.status >= 300:
            reason = text[:200].decode(errors="replace")
            raise Rejected(f"upload of {name} to the lease was refused: HTTP {resp.status} {reason}")


@contextlib.contextmanager
def map_upload_errors(name: str, where: str) -> Iterator[None]:
    """The errors of one upload as ours (``where``: the host's URL), chained."""
    try:
        yield
    except PinMismatch as exc:
        raise Rejected(f"upload of {name}: the host's certificate does not match vcenter.thumbprint") from exc
    except ssl.SSLCertVerificationError as exc:
        raise Rejected(
            f"upload of {name}: the host's TLS certificate is not trusted ({exc.verify_message}); "
            "set vcenter.ca_file to a CA that signed the ESXi hosts' certificates too"
        ) from exc
    except TimeoutError as exc:
        raise Timeout(f"upload of {name} to {where} timed out") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"upload of {name} to {where}: {type(exc).__name__}: {exc}") from exc
