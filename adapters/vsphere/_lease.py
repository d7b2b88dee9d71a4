"""The NFC lease of an OVA import: wait until it is ready, stream the files, complete it.

``ImportVApp`` creates the VM and hands back an ``HttpNfcLease``; its ``info`` lists one
URL per file to upload. The URLs may name the host ``*`` (vCenter does not know the
address the client reaches it by): that host is replaced by vCenter's own. Progress is
reported while the upload runs, which also keeps the lease alive (vCenter drops a lease
that stays silent for minutes). On any failure the lease is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from adapters.vsphere._ova import Package, Uploads
from adapters.vsphere._session import SYSTEM, Session
from config.errors import Rejected

UPLOAD_THREADS = 4  # disks streamed at once; their own threads, so SOAP calls never wait behind an upload

__all__ = ["LeaseUpload"]


class LeaseUpload:
    """Uploads of one adapter: its session, TLS trust and HTTP client.

    Args:
        session: the vCenter session (its netloc, TLS context or pin, and cookie).
        write: how the adapter makes a change (``VCenter._write``), for the completion.
        ready: waits for a lease to be ready and returns its ``info``
            (``TaskWaiter.lease_ready``: polled with the other reads under way).
        progress_s: interval of progress reports.
    """

    def __init__(
        self,
        session: Session,
        write: Callable[..., Awaitable[Any]],
        ready: Callable[[Any, str], Awaitable[Any]],
        *,
        progress_s: float,
    ):
        self._session = session
        self._write = write
        self._ready = ready
        self._progress_s = progress_s
        self._http = Uploads(session.ssl_context, session.pin)
        self._executor: ThreadPoolExecutor | None = None

    async def aclose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        await asyncio.to_thread(self._http.close)

    async def _upload(
        self, url: str, package: Package, name: str, *, create: bool, sent: Callable[[int], None]
    ) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="vsphere-upload")
        upload = functools.partial(
            self._http.upload_sync, url, package, name, create=create, cookie=self._session.cookie(), sent=sent
        )
        await asyncio.get_running_loop().run_in_executor(self._executor, upload)

    async def run(self, lease: Any, package: Package, file_items: Any, name: str) -> Any:
        """Stream every file of ``package`` the lease asks for and complete it: the new VM."""
        try:
            info = await self._ready(lease, f"import {name}")
            urls = {du.importKey: du for du in info.deviceUrl or ()}
            unmatched = [fi.deviceId for fi in file_items if fi.deviceId not in urls]
            if unmatched:
                # Completing the lease without them would leave a VM with empty disks.
                raise Rejected(
                    f"import {name}: the lease gives no upload URL for {', '.join(unmatched)}; the import is aborted",
                    system=SYSTEM,
                )
            uploads = [(urls[fi.deviceId], fi) for fi in file_items]
            total = sum(fi.size or package.files.get(fi.path, (None, 0, 0))[2] for _, fi in uploads) or 1
            done = 0

            def sent(n: int) -> None:
                nonlocal done
                done += n

            progress = asyncio.ensure_future(self._report(lease, lambda: min(99, done * 100 // total)))
            try:
                for du, fi in uploads:
                    self._check_pin(du.url)
                    await self._upload(self._url(du.url), package, fi.path, create=bool(fi.create), sent=sent)
            finally:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress
            await self._write(
                f"complete the import of {name}", lambda c: lease.HttpNfcLeaseComplete(), keeps_briefs=True
            )  # import_ova adds the VM once tagged
            return info.entity
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._session.call(
                        f"abort the import of {name}", lambda c: lease.HttpNfcLeaseAbort(), idempotent=False
                    )
                )
            raise

    async def _report(self, lease: Any, percent: Callable[[], int]) -> None:
        while True:
            await asyncio.sleep(self._progress_s)
            await self._session.call(
                "report import progress", lambda c: lease.HttpNfcLeaseProgress(percent=percent()), idempotent=False
            )

    def _url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.hostname == "*":
            return urlunsplit(("https", self._session.netloc, parts.path, parts.query, ""))
        return url

    def _check_pin(self, url: str) -> None:
        """A pin covers vCenter's own host only: an upload elsewhere needs a CA (``vcenter.ca_file``)."""
        host = urlsplit(url).hostname
        if self._session.pin is not None and host not in ("*", self._session.host):
            raise Rejected(
                f"the import goes to host {host}, whose certificate the pinned vcenter.thumbprint does not cover; "
                "set vcenter.ca_file to a CA that signed vCenter's and the hosts' certificates",
                system=SYSTEM,
            )
