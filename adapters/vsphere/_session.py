"""One vCenter session: TLS, login, re-login, round-trip counting and error mapping.

pyvmomi is synchronous. Every call made through :class:`Session` runs in a worker
thread (``asyncio.to_thread``), never on the event loop.

TLS is always verified, one of two ways:

* ``ca_file`` (or the system trust store when neither is set): full chain and
  hostname verification;
* ``thumbprint`` ("sha256:AA:BB:..."): the leaf certificate is pinned and checked on
  every new connection.

An ``sslContext`` is always passed: without one pyvmomi silently turns off every
check for localhost. pyvmomi's own thumbprint support is not used: it only runs
when chain verification fails, and it then switches the shared context to
``CERT_NONE`` for good, so later connections would not be checked at all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import hmac
import http.client
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pyVmomi import SoapStubAdapter, vim, vmodl  # type: ignore[attr-defined]  # not re-exported in its stubs

from config.errors import AdapterError, ConfigError, Rejected, Timeout, Unreachable
from config.model import VCenterSpec
from config.secrets import REDACTOR

__all__ = [
    "PinMismatch",
    "Session",
    "login_of",
    "map_vmomi_errors",
    "parse_thumbprint",
    "pinned_connection_class",
    "tls_context",
]

T = TypeVar("T")

# vSphere 6.5: the oldest API with everything used here (PutUsbScanCodes came in 6.5);
# newer servers answer it unchanged (they keep prior versions).
API_VERSION = "vim.version.version11"

SYSTEM = "vsphere"


class PinMismatch(ssl.SSLError):
    """The server's certificate is not the pinned one."""


def parse_thumbprint(value: str) -> bytes:
    """``"sha256:AA:BB:..."`` (prefix optional, colons optional) -> 32 raw bytes.

    Raises:
        ConfigError: not a SHA-256 thumbprint (``vcenter.thumbprint``).
    """
    text = value.strip()
    algo, sep, rest = text.partition(":")
    if sep and algo.lower() in {"sha1", "sha256", "sha512", "md5"}:
        if algo.lower() != "sha256":
            raise ConfigError(
                f"only SHA-256 thumbprints are accepted (got {algo}); "
                "take it with: openssl x509 -noout -fingerprint -sha256 -in cert.pem",
                "vcenter.thumbprint",
            )
        text = rest
    hexdigits = text.replace(":", "").replace(" ", "")
    try:
        raw = bytes.fromhex(hexdigits)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"{value!r} is not a SHA-256 thumbprint (32 bytes in hex, e.g. 'sha256:AB:CD:...'); "
            "take it with: openssl x509 -noout -fingerprint -sha256 -in cert.pem",
            "vcenter.thumbprint",
        )
    return raw


def tls_context(spec: VCenterSpec) -> tuple[ssl.SSLContext, bytes | None]:
    """The SSL context and the pinned SHA-256 digest (or ``None``) for ``spec``."""
    pin = parse_thumbprint(spec.thumbprint) if spec.thumbprint else None
    if spec.ca_file or pin is None:
        try:
            ctx = ssl.create_default_context(cafile=spec.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot read the CA file {spec.ca_file!r}: {exc}; give a PEM file of the CA "
                "that signed vCenter's certificate",
                "vcenter.ca_file",
            ) from exc
    else:
        # Pinned: the chain is not verified (a self-signed ESXi certificate has none),
        # the leaf's digest is, on every connection (pinned_connection_class).
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx, pin


def pinned_connection_class(pin: bytes) -> type[http.client.HTTPSConnection]:
    class PinnedHTTPSConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            assert self.sock is not None
            der = self.sock.getpeercert(binary_form=True) or b""
            if not hmac.compare_digest(hashlib.sha256(der).digest(), pin):
                self.close()
                raise PinMismatch(
                    "the server's certificate does not match vcenter.thumbprint "
                    f"(it presents sha256:{hashlib.sha256(der).hexdigest()})"
                )

    return PinnedHTTPSConnection


class _CountingStub(SoapStubAdapter):
    """A SOAP stub that counts round trips per method (for ``statistics()``), and knows
    the login it serves (``login_of``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generation = 0  # Session.generation of its login, once logged in
        # Property reads parsed by adapters.vsphere._fastprops rather than pyVmomi (issue #11: CPU).
        self.fast_reads = True
        self.calls: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()

    def count(self, method: str) -> None:
        """One round trip of ``method`` (also made outside ``InvokeMethod``: ``_fastprops``)."""
        with self._count_lock:
            self.calls[method] += 1

    def InvokeMethod(self, mo: Any, info: Any, args: Any, outerStub: Any = None) -> Any:
        self.count(info.wsdlName)
        return super().InvokeMethod(mo, info, args, outerStub)


def login_of(obj: Any) -> int:
    """The login (``Session.generation``) under which vCenter handed out ``obj`` (a task,
    a lease); 0 when unknown. A moref is only a name: after vCenter restarted, the same
    name can denote another object."""
    return int(getattr(getattr(obj, "_stub", None), "generation", 0))


# A connection that broke or closed under us (vCenter stopped, restarted, or dropped an idle
# pooled connection). A TLS EOF is one of these, not a trust problem.
_LOST = (ConnectionError, http.client.HTTPException, TimeoutError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


@contextlib.contextmanager
def map_vmomi_errors(what: str) -> Iterator[None]:
    """Re-raise pyvmomi and socket errors as ``config.errors`` types, ``from`` the original.

    ``what`` says what was being done ("reconfigure VM pexip-mgmt"); it starts the message.
    """
    try:
        yield
    except AdapterError:
        raise
    except ConfigError:
        raise
    except PinMismatch as exc:
        raise Rejected(f"{what}: {exc}; check vcenter.thumbprint", system=SYSTEM) from exc
    except ssl.SSLCertVerificationError as exc:
        raise Rejected(
            f"{what}: vCenter's TLS certificate is not trusted ({exc.verify_message}); "
            "set vcenter.ca_file to the CA that signed it, or pin vcenter.thumbprint",
            system=SYSTEM,
        ) from exc
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
        raise Unreachable(f"{what}: cannot reach vCenter: the connection closed ({exc})", system=SYSTEM) from exc
    except ssl.SSLError as exc:
        raise Unreachable(f"{what}: TLS failed: {exc}", system=SYSTEM) from exc
    except vim.fault.InvalidLogin as exc:
        raise Rejected(
            f"{what}: vCenter refused the login; check vcenter.user and vcenter.password",
            system=SYSTEM,
        ) from exc
    except vmodl.fault.ManagedObjectNotFound as exc:
        # The object went away under us (deleted, or vCenter lost its state): observing
        # again and redoing the step is the cure, so it is retryable.
        raise Rejected(
            f"{what}: {exc.obj} no longer exists in vCenter; observe again",
            retryable=True,
            system=SYSTEM,
        ) from exc
    except vim.fault.TaskInProgress as exc:
        raise Rejected(f"{what}: another task is running on it; try again", retryable=True, system=SYSTEM) from exc
    except vmodl.MethodFault as exc:
        message = REDACTOR.scrub_text(getattr(exc, "msg", "") or type(exc).__name__)
        raise Rejected(f"{what}: vCenter said {type(exc).__name__}: {message}", system=SYSTEM) from exc
    except TimeoutError as exc:
        raise Timeout(f"{what}: vCenter did not answer in time", system=SYSTEM) from exc
    except (*_LOST, OSError) as exc:
        raise Unreachable(f"{what}: cannot reach vCenter: {type(exc).__name__}: {exc}", system=SYSTEM) from exc


class Session:
    """The run's one vCenter session, logged in lazily and again when vCenter forgets it.

    ``call(fn)`` runs ``fn(content)`` in a worker thread with a live session:
    ``vim.fault.NotAuthenticated`` (vCenter restarted or expired the session) leads to
    one new login and one retry, which is always safe since the call was refused.
    A connection error leads to a retry only when ``idempotent`` (a read): a write that
    lost its answer may have happened, and only observing again can tell.
    """

    def __init__(self, spec: VCenterSpec, password: str, *, timeout_s: float = 60.0):
        parts = urlsplit(spec.url if "//" in spec.url else f"https://{spec.url}")
        if parts.scheme != "https":
            raise ConfigError(f"{spec.url!r} must be an https:// URL (TLS is always verified)", "vcenter.url")
        if not parts.hostname:
            raise ConfigError(f"{spec.url!r} has no host name", "vcenter.url")
        self.spec = spec
        self.host = parts.hostname
        self.port = parts.port or 443
        self.path = parts.path if parts.path not in ("", "/") else "/sdk"
        self.ssl_context, self.pin = tls_context(spec)
        self._password = password
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._stub: _CountingStub | None = None
        self._content: Any = None
        self.generation = 0  # +1 per login: caches of morefs are per generation
        self.logins = 0
        self._retired_calls: collections.Counter[str] = collections.Counter()
        self._cache: dict[str, Any] = {}  # per login: views, inventory (morefs die with a session)
        self._cache_lock = threading.Lock()

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # --- statistics ----------------------------------------------------------------

    def round_trips(self) -> collections.Counter[str]:
        """SOAP calls by method name, over every stub this session used."""
        total = collections.Counter(self._retired_calls)
        if self._stub is not None:
            total.update(self._stub.calls)
        return total

    def cookie(self) -> str:
        """The session cookie, for the NFC upload (never logged)."""
        return self._stub.cookie if self._stub is not None else ""

    # --- connection ------------------------------------------------------------------

    def _new_stub(self) -> _CountingStub:
        stub = _CountingStub(
            host=self.host,
            port=self.port,
            path=self.path,
            version=API_VERSION,
            sslContext=self.ssl_context,
            httpConnectionTimeout=self._timeout_s,
            # Idle pooled connections are closed before vCenter closes them: a write sent
            # on a connection the server already dropped fails and is not retried.
            connectionPoolTimeout=30,
        )
        if self.pin is not None:
            stub.scheme = pinned_connection_class(self.pin)  # type: ignore[assignment]  # an HTTPSConnection subclass
        return stub

    def _login_locked(self) -> None:
        old = self._stub
        if old is not None:
            self._retired_calls.update(old.calls)
            old.DropConnections()
        stub = self._new_stub()
        self._stub = stub
        self._content = None
        with self._cache_lock:
            self._cache = {}
        si = vim.ServiceInstance("ServiceInstance", stub)
        content = si.RetrieveContent()
        assert content.sessionManager is not None  # vCenter always has one; the stubs allow None
        content.sessionManager.Login(userName=self.spec.user, password=self._password)  # type: ignore[call-arg]  # locale is optional
        self._content = content
        self.generation += 1
        stub.generation = self.generation
        self.logins += 1

    def _ensure(self) -> tuple[Any, int]:
        with self._lock:
            if self._content is None:
                self._login_locked()
            return self._content, self.generation

    def _relogin(self, seen_generation: int) -> None:
        with self._lock:
            # Another thread may have logged in again already: one login per loss.
            if self.generation == seen_generation or self._content is None:
                self._login_locked()

    def _drop_connections(self) -> None:
        if self._stub is not None:
            self._stub.DropConnections()

    def once(self, key: str, factory: Callable[[], T]) -> T:
        """``factory()`` once per login (a view, the inventory), kept until the next login."""
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]  # type: ignore[no-any-return]
            generation = self.generation
        value = factory()
        with self._cache_lock:
            if generation != self.generation:
                return value  # made under a session that is gone: do not keep it
            return self._cache.setdefault(key, value)  # type: ignore[no-any-return]

    def kept(self, key: str) -> Any:
        """What :meth:`once` keeps under ``key`` for this login (``None``: nothing yet), read on
        the caller's thread: no hop to a worker thread for what needs no round trip."""
        with self._cache_lock:
            return self._cache.get(key)

    def forget(self, key: str) -> None:
        with self._cache_lock:
            self._cache.pop(key, None)

    def _session_alive(self, content: Any) -> bool:
        """Whether vCenter still knows our session (asked only after an error)."""
        PC = vmodl.query.PropertyCollector
        try:
            result = content.propertyCollector.RetrievePropertiesEx(
                specSet=[
                    PC.FilterSpec(
                        objectSet=[PC.ObjectSpec(obj=content.sessionManager)],
                        propSet=[PC.PropertySpec(type=vim.SessionManager, pathSet=["currentSession"])],
                    )
                ],
                options=PC.RetrieveOptions(),
            )
        except vim.fault.NotAuthenticated:
            return False
        for obj in result.objects if result is not None else ():
            if obj.missingSet:
                return False
            return any(p.val is not None for p in obj.propSet or ())
        return False

    def call_sync(self, fn: Callable[[Any], T], *, idempotent: bool) -> T:
        """Run ``fn(content)`` here (a worker thread) with a live session.

        At most one new login and, for a read, one retry on a lost connection: a vCenter
        that restarted shows both (the pooled connection breaks, then the session is gone).
        """
        relogged = resent = False
        while True:
            content, generation = self._ensure()
            try:
                return fn(content)
            except vim.fault.NotAuthenticated:
                if relogged:
                    raise
                relogged = True
                self._relogin(generation)
            except vmodl.fault.ManagedObjectNotFound:
                # A restarted vCenter forgets the session's views, and may answer for
                # them before it says NotAuthenticated: find out which it is.
                if relogged or self._session_alive(content):
                    raise
                relogged = True
                self._relogin(generation)
            except _LOST:
                self._drop_connections()
                if resent or not idempotent:
                    raise
                resent = True

    async def call(
        self, what: str, fn: Callable[[Any], T], *, idempotent: bool = True, executor: Executor | None = None
    ) -> T:
        """``call_sync`` in a worker thread, errors mapped (``what`` names the action)."""
        with map_vmomi_errors(what):
            if executor is None:
                return await asyncio.to_thread(self.call_sync, fn, idempotent=idempotent)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, functools.partial(self.call_sync, fn, idempotent=idempotent))

    def close_sync(self) -> None:
        with self._lock:
            content, stub = self._content, self._stub
            self._content = None
            if content is not None:
                with contextlib.suppress(Exception):
                    content.sessionManager.Logout()
            if stub is not None:
                stub.DropConnections()
