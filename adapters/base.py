"""The contract between the orchestrator and the outside systems.

One ``typing.Protocol`` per outside system. Each has a real implementation
(``adapters/<system>.py``) and a simulated twin (``adapters/<system>_sim.py``)
with the same methods and the same errors (:mod:`config.errors`). Adapters
never import ``machines/`` or ``journal/``: they receive the desired state and
return what they observed.

Every method that changes something is idempotent in effect: the steps
(``orchestrator/steps``) observe first and only call it when the world differs,
then observe again to verify.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeGuard, runtime_checkable

from config.model import Deployment, NodeSpec

if TYPE_CHECKING:
    from adapters.bootstrap_store import BootstrapStore

__all__ = [
    "VmState",
    "DiskAllocation",
    "Reservation",
    "BiosState",
    "InventoryEvent",
    "VSphere",
    "Created",
    "PexipApi",
    "NodeProvisioning",
    "WizardState",
    "Console",
    "CertificateAuthority",
    "Directory",
    "FirstUseTrust",
    "TrustsOnFirstUse",
    "Systems",
]


# --- vCenter / ESXi ---------------------------------------------------------------


@dataclass(frozen=True)
class VmState:
    """What vSphere shows of one managed VM."""

    name: str
    identity: str  # the deployment identity custom attribute: "<deployment>/<node>"
    moref: str
    host: str
    portgroup: str | None
    power_state: Literal["poweredOn", "poweredOff", "suspended"]
    num_cpus: int
    memory_mb: int


@dataclass(frozen=True)
class DiskAllocation:
    key: int  # the virtual disk's device key
    label: str
    datastore: str
    shares: str  # "low" | "normal" | "high" | "custom"
    iops_limit: int  # -1: unlimited


@dataclass(frozen=True)
class Reservation:
    """CPU, memory and disk allocation of a VM, complete (vSphere replaces partial structs)."""

    cpu_reservation_mhz: int
    cpu_limit_mhz: int  # -1: unlimited
    cpu_shares: str
    memory_reservation_mb: int
    memory_limit_mb: int  # -1: unlimited
    memory_shares: str
    memory_locked: bool  # memoryReservationLockedToMax
    disks: tuple[DiskAllocation, ...] = ()


@dataclass(frozen=True)
class BiosState:
    """What the API can see of the BIOS lock: not the password itself."""

    enter_bios_setup: bool
    boot_disk_first: bool  # SCSI (0:0) hard disk first in the boot order
    power_state: str
    locked_marker: bool  # our marker that the password keystrokes were sent and saved


@dataclass(frozen=True)
class InventoryEvent:
    """A VM appeared (``enter``), changed (``modify``) or went away (``leave``): what the daemon's watch sees."""

    kind: Literal["enter", "modify", "leave"]
    moref: str
    name: str
    identity: str | None  # our identity attribute, None for VMs that are not ours
    power_state: str | None
    changed: tuple[str, ...] = ()  # property paths that changed (modify)


@runtime_checkable
class VSphere(Protocol):
    async def preflight(self, deployment: Deployment) -> None:
        """Raise ``ConfigError`` listing every problem (NICs, VLANs, inventory) before any change."""

    async def find_vm(self, node: NodeSpec, identity: str) -> VmState | None:
        """Our VM for ``node``, found by identity. A VM of the node's name that is not ours
        raises ``Rejected`` (never silently adopted)."""

    async def import_ova(self, node: NodeSpec, identity: str, ova: str) -> VmState:
        """Import the OVA as ``node`` on its host/datastore/folder/portgroup, tagged with ``identity``."""

    async def host_cpu_mhz(self, host: str) -> int:
        """MHz of one core of ``host`` (reservation = vCPUs x this)."""

    async def get_reservation(self, vm: VmState) -> Reservation: ...

    async def set_reservation(self, vm: VmState, wanted: Reservation) -> None: ...

    async def datastore_iops_in_use(self, datastore: str, exclude_vm: str) -> int:
        """Sum of the IOPS limits of every VM disk on ``datastore`` but ``exclude_vm``'s."""

    async def get_bios(self, vm: VmState) -> BiosState: ...

    async def lock_bios(self, vm: VmState, password: str) -> None:
        """Force BIOS setup, disk first, power on, type the supervisor password, save and exit,
        and set the marker. ``password`` never reaches a log."""

    def watch_inventory(self, pattern: str | None = None, tag: str | None = None) -> AsyncIterator[InventoryEvent]:
        """Events for the VMs whose name matches ``pattern`` (glob; default ``vcenter.name_pattern``)
        and that carry the custom attribute ``tag`` (default ``vcenter.tag``; none: any VM): first an
        ``enter`` for each such VM already there, then each change, until the consumer stops."""

    def resync(self) -> None:
        """What is kept of the inventory between configuration changes (every VM's brief, kept current
        from the adapter's own changes and the inventory watch) is read afresh by the next lookup: the
        daemon's periodic resync, for a change the watch did not report."""

    async def power_off(self, vm: VmState) -> VmState:
        """Power the VM off (a standby contingency deployment); one already off is left as is.
        Returns the VM as observed afterwards: ``Rejected`` unless it shows ``poweredOff``."""

    async def aclose(self) -> None: ...


# --- Pexip management API -------------------------------------------------------


@dataclass(frozen=True)
class Created:
    uri: str  # "/api/admin/configuration/v1/<resource>/<id>/"
    # worker_vm: the node's bootstrap configuration, verbatim (JSON or XML, secret). No endpoint
    # returns it again (pexip-api.md 7.2): the caller stores it before anything else.
    body: bytes = b""

    def __repr__(self) -> str:  # the body is secret: never in a log or a traceback
        return f"Created(uri={self.uri!r}, body=<{len(self.body)} bytes>)"


@runtime_checkable
class PexipApi(Protocol):
    """The management REST API (``pexip-api.md``), resource by resource.

    ``resource`` is the configuration resource name (``"dns_server"``, ``"global"``...);
    foreign keys are resource URIs. Only PATCH is used for updates.
    """

    async def list_objects(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        """GET ``<resource>/``: every object matching ``filters`` (``field=value``)."""

    async def get(self, uri: str) -> dict[str, Any]: ...

    async def create(self, resource: str, fields: dict[str, Any]) -> Created: ...

    async def patch(self, uri: str, fields: dict[str, Any]) -> None: ...

    async def delete(self, uri: str) -> None: ...

    async def status(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        """``/api/admin/status/v1/<resource>/`` objects (for example worker_vm sync state),
        filtered like ``list_objects`` (``name=...``: one node's status without paging through all)."""

    async def verify_login(self, *, use_client_cert: bool) -> str:
        """Log in as the orchestrator's verifying identity; return the roles granted.
        Raises ``Rejected`` when the login would fail: a lock-out is detected before it happens."""

    async def aclose(self) -> None: ...


# --- Conferencing Node provisioning interface -----------------------------------


@runtime_checkable
class NodeProvisioning(Protocol):
    """The provisioning interface of a Conferencing Node deployed from the generic OVA
    (``MANUAL-PROVISION-ONLY``, pexip-api.md 7.3): HTTPS on tcp/8443 of the node's address,
    where its bootstrap file is uploaded. A node that never gets its file never contacts the Manager."""

    async def upload_bootstrap(self, node: NodeSpec, body: bytes) -> None:
        """Upload ``body`` (the worker_vm POST answer, verbatim) to ``node``'s provisioning interface.

        Uploading the same file again to a node that already took it is not an error (a replay
        after a crash). ``body`` never reaches a log.

        Raises:
            Unreachable: the interface does not answer (yet): retryable.
            Rejected: the node refuses the file (it already took another one: redeploy its VM).
        """

    async def aclose(self) -> None: ...


# --- Node console (installation and security wizards) ---------------------------

WizardState = Literal["unconfigured", "installed", "secured"]


@runtime_checkable
class Console(Protocol):
    async def wizard_state(self, node: NodeSpec) -> WizardState:
        """Which wizards the node's console says are done. After the security wizard no OS
        login exists, so ``secured`` is read from the refusal itself."""

    async def installation_wizard(self, node: NodeSpec, admin_password: str, answers: dict[str, Any]) -> None: ...

    async def security_wizard(self, node: NodeSpec, admin_password: str, answers: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


# --- Certificate authority --------------------------------------------------------


@runtime_checkable
class CertificateAuthority(Protocol):
    @property
    def answers_by_itself(self) -> bool:
        """True when the CA signs a submitted CSR with no person in between (the simulated CA).

        Such a CA is worth polling while a node waits on its certificate; a manual CA is
        asked once per run, which then exits 3 saying how to import the certificate.
        """

    async def submit(self, node: str, csr_pem: str) -> None:
        """Hand the CSR to the CA (a file in the outbox for a manual CA)."""

    async def collect(self, node: str) -> str | None:
        """The signed certificate (PEM) once the CA has returned it, else ``None``."""

    async def chain(self) -> list[str]:
        """The trusted CA chain to upload (PEM blocks, root last)."""

    async def withdraw(self, node: str) -> None:
        """Forget ``node``'s CSR and the certificate answering it, before a renewal CSR for the same key:
        the old answer (for that key too) must not be taken as the new one. Nothing to forget is no error."""

    async def aclose(self) -> None: ...


# --- LDAP directory -----------------------------------------------------------------


@runtime_checkable
class Directory(Protocol):
    async def verify_bind(self) -> None:
        """Bind as the service account over StartTLS; ``Rejected`` if refused."""

    async def group_exists(self, dn: str) -> bool: ...

    async def user_groups(self, user: str) -> list[str]:
        """DNs of the groups ``user`` is a member of (none for an unknown user).

        Also what the simulated Management Node asks to decide an LDAP login, so its
        logins follow this directory, real or simulated."""

    async def aclose(self) -> None: ...


# --- trust on first use -------------------------------------------------------------


@dataclass(frozen=True)
class FirstUseTrust:
    """A peer's host key or certificate accepted on first use (its ``trust_on_first_use`` set explicitly).

    The adapter only reports it; the engine journals it (``trust_on_first_use``) and hands the journaled
    ones back to the adapters on every later run, so that a peer that shows another key is refused.
    """

    system: str  # "console", "pexip_api", "provisioning"
    address: str  # host:port (the console, the Manager) or the interface's URL (a Conferencing Node)
    fingerprint: str  # as the configuration would pin it: "SHA256:..." (SSH) or "sha256:AA:BB:..." (TLS)


@runtime_checkable
class TrustsOnFirstUse(Protocol):
    """An adapter that may trust a peer on first use (the real console, API and provisioning clients)."""

    def first_use_trusts(self) -> list[FirstUseTrust]:
        """The keys accepted on first use since the last call (each reported once)."""
        ...

    def pin_first_use(self, trusts: list[FirstUseTrust]) -> None:
        """Keys earlier runs accepted (from the journal): from now on pinned, never trusted anew.
        Entries of another system are ignored."""
        ...


def _trusts_on_first_use(adapter: object) -> TypeGuard[TrustsOnFirstUse]:
    return callable(getattr(adapter, "first_use_trusts", None)) and callable(getattr(adapter, "pin_first_use", None))


@dataclass
class Systems:
    """The adapters of one run, wired from the configuration (real or sim per system)."""

    vsphere: VSphere
    pexip: PexipApi
    console: Console
    ca: CertificateAuthority
    directory: Directory
    # The Conferencing Nodes' provisioning interfaces, and where their bootstrap files wait
    # (encrypted) until uploaded; None where a caller needs no Conferencing Node provisioned.
    provisioning: NodeProvisioning | None = None
    bootstrap: BootstrapStore | None = None

    def _trusting(self) -> list[TrustsOnFirstUse]:
        adapters: tuple[object, ...] = (
            self.vsphere,
            self.pexip,
            self.console,
            self.ca,
            self.directory,
            self.provisioning,
        )
        # Not isinstance(a, TrustsOnFirstUse): a runtime Protocol check walks the protocol's attributes each
        # time, and this runs at every step's commit (7% of a 300-node simulation's time, issue #11).
        return [a for a in adapters if _trusts_on_first_use(a)]

    def first_use_trusts(self) -> list[FirstUseTrust]:
        """Every adapter's keys accepted on first use since the last call."""
        return [trust for adapter in self._trusting() for trust in adapter.first_use_trusts()]

    def pin_first_use(self, trusts: list[FirstUseTrust]) -> None:
        """Hand the journaled first-use keys back to the adapters (each takes its system's)."""
        for adapter in self._trusting():
            adapter.pin_first_use(trusts)

    async def aclose(self) -> None:
        """Close every adapter, even when one fails to close.

        Raises:
            BaseException: the one error, re-raised after the others were closed; several
                errors as one ``ExceptionGroup`` (``BaseExceptionGroup`` if one is not an
                ``Exception``, such as a cancellation).
        """
        errors: list[BaseException] = []
        adapters = (self.vsphere, self.pexip, self.console, self.ca, self.directory, self.provisioning)
        for adapter in (a for a in adapters if a is not None):
            try:
                await adapter.aclose()
            except BaseException as exc:  # the next adapter is closed all the same
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup(f"closing the adapters: {len(errors)} of them failed", errors)
