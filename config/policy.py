"""The secure-mode policy as typed, frozen data: one dataclass per section of the policy file.

``config/secure-mode-policy.toml`` holds the guide's values; :func:`config.load.load_policy`
checks it against the fields declared here (their names and types are the file's schema)
and builds a :class:`Policy`. Every layer may import these types: plain data, no I/O.
Lists of the file are tuples here, so a loaded policy cannot be changed by a consumer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Literal

__all__ = [
    "InstallationWizardPolicy",
    "SecurityWizardPolicy",
    "GlobalSettingsPolicy",
    "LocationPolicy",
    "SnmpPolicy",
    "NetworkServicesPolicy",
    "RolesPolicy",
    "AuthenticationPolicy",
    "ContingencyPolicy",
    "ReservationPolicy",
    "VlanPolicy",
    "BiosPolicy",
    "RetryPolicy",
    "GatesPolicy",
    "ConcurrencyPolicy",
    "Policy",
    "JournalPolicy",
]


class _FieldMap:
    """A section that is sent as a map of API (or console prompt) field -> value."""

    __slots__ = ()

    def settings(self) -> dict[str, object]:
        """The section's settings by field name, without ``customizable`` (which is about the file)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "customizable"}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class InstallationWizardPolicy(_FieldMap):
    """The installation wizard's answers (the console prompts' names)."""

    enable_incident_reporting: bool
    send_deployment_and_usage_statistics: bool


@dataclass(frozen=True, slots=True)
class SecurityWizardPolicy(_FieldMap):
    """The security wizard's answers: every prompt of the wizard."""

    enable_fips_140_2_compliance_mode: bool
    disable_system_administrator_account: bool
    accept_icmpv6_redirects: bool
    drop_incoming_packets_to_closed_ports: bool
    accept_multicast_icmpv6_echo_requests: bool
    enable_ipv6_duplicate_address_detection: bool
    sip_udp_listen_port: int
    sip_tcp_listen_port: int
    sip_tls_listen_port: int
    active_management_web_sessions: int
    active_per_user_management_web_sessions: int
    enable_management_web_validation_of_host_headers: bool
    enable_tls_1_0: bool
    enable_anonymous_dh_for_outbound_sip_tls: bool
    customizable: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GlobalSettingsPolicy(_FieldMap):
    """Fields of the management API's ``global/1/`` resource."""

    enable_chat: bool
    enable_dialout: bool
    enable_application_api: bool
    enable_ssh: bool
    management_qos: int
    ocsp_state: str
    sip_tls_cert_verify_mode: str
    legacy_api_http: bool
    session_timeout_enabled: bool
    management_session_timeout: int
    customizable: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LocationPolicy(_FieldMap):
    """Fields of the management API's ``system_location`` resource, the same for every location."""

    media_qos: int
    signalling_qos: int
    mtu: int
    customizable: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SnmpPolicy:
    snmp_mode: str  # the API's name of "SNMPv3 read-only"
    forbidden_community: str


@dataclass(frozen=True, slots=True)
class NetworkServicesPolicy:
    min_dns_servers: int
    min_ntp_servers: int
    ntp_key_required: bool
    min_syslog_servers: int


@dataclass(frozen=True, slots=True)
class RolesPolicy:
    edit: tuple[str, ...]  # built-in roles that lose remove_permissions
    remove_permissions: tuple[str, ...]
    auditor_name: str
    auditor_permissions: tuple[str, ...]
    all_roles: tuple[str, ...]  # each must be mapped to an LDAP group


@dataclass(frozen=True, slots=True)
class AuthenticationPolicy:
    initial_source: str  # while LDAP is being proven: LDAP and local
    final_source: str
    client_certificate: Literal["CN", "UPN"]  # the default of ldap.client_certificate
    ldap_permit_no_tls: bool


@dataclass(frozen=True, slots=True)
class ContingencyPolicy:
    """``[deployment] profile = "contingency"``: the guide's fallback system, the primary except these."""

    authentication_source: str  # LDAP and local: the local admin account is kept, for when LDAP is down
    client_certificate: str  # "NO": no certificate-based authentication
    licensing: bool  # deployed without licensing (no step of either profile licenses a node)
    power_off: bool  # a standby: every VM powered off once the deployment is built


@dataclass(frozen=True, slots=True)
class ReservationPolicy:
    cpu_reservation: str
    cpu_limit: str
    cpu_shares: str
    memory_reserve_all_locked: bool
    memory_limit: str
    memory_shares: str
    disk_shares: str
    disk_iops_limit_required: bool


@dataclass(frozen=True, slots=True)
class VlanPolicy:
    min: int
    max: int
    forbidden: tuple[int, ...]  # 4095: virtual guest tagging


@dataclass(frozen=True, slots=True)
class BiosPolicy:
    force_setup: bool
    boot_first: str
    supervisor_password: bool
    save_and_exit: bool


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed side effect is retried (the orchestrator's, not the guide's)."""

    max_attempts: int
    initial_backoff_s: float
    max_backoff_s: float
    multiplier: float
    jitter: float
    wait_timeout_s: float
    customizable: tuple[str, ...]

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based).

        Exponential from ``initial_backoff_s`` by ``multiplier``, capped at ``max_backoff_s``,
        then spread by +/- ``jitter`` (a fraction) so that many nodes do not retry in step.
        """
        delay = min(self.initial_backoff_s * self.multiplier ** (attempt - 1), self.max_backoff_s)
        return delay * (1 + rng.uniform(-self.jitter, self.jitter))


@dataclass(frozen=True, slots=True)
class GatesPolicy:
    security_wizard_approval: bool  # an operator approves the irreversible security wizard


@dataclass(frozen=True, slots=True)
class ConcurrencyPolicy:
    max_nodes: int  # nodes driven at once
    per_host: int  # side effects at once on one ESXi host: the default of a host's max_concurrent
    customizable: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """The guide's values, from ``config/secure-mode-policy.toml``: one attribute per section."""

    installation_wizard: InstallationWizardPolicy
    security_wizard: SecurityWizardPolicy
    global_settings: GlobalSettingsPolicy
    location: LocationPolicy
    snmp: SnmpPolicy
    network_services: NetworkServicesPolicy
    roles: RolesPolicy
    authentication: AuthenticationPolicy
    contingency: ContingencyPolicy
    reservation: ReservationPolicy
    vlan: VlanPolicy
    bios: BiosPolicy
    retry: RetryPolicy
    gates: GatesPolicy
    concurrency: ConcurrencyPolicy
    journal: JournalPolicy


@dataclass(frozen=True, slots=True)
class JournalPolicy:
    """Not from the guide: how often the journal's chain is signed (and witnessed by syslog)."""

    checkpoint_every: int  # committed transitions between two signed checkpoints (and one at the end of a run)
    customizable: tuple[str, ...]
