"""The policy file agrees with the Secure Mode Deployment Guide, value by value.

The expected values are read out of the guide's own text (a copy in tests/data), not
written again here; only the guide-wording-to-API-name mappings are test data. A
tampered copy of the policy proves the checker notices a disagreement.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from config.load import POLICY_PATH, load_policy
from config.model import Policy

GUIDE_PATH = Path(__file__).resolve().parents[1] / "data" / "secure-mode-guide.txt"

# The guide's Global settings rows -> pexip-api.md global/1/ field names.
GLOBAL_FIELDS = {
    "Enable chat": "enable_chat",
    "Enable outbound calls": "enable_dialout",
    "Enable support for Pexip Infinity Connect and Mobile App": "enable_application_api",
    "Enable SSH": "enable_ssh",
    "DSCP value for management traffic": "management_qos",
    "OCSP state and OCSP responder URL": "ocsp_state",
    "SIP TLS certificate verification mode": "sip_tls_cert_verify_mode",
    "Enable HTTP access for external systems": "legacy_api_http",
    "Management web interface session timeout": "management_session_timeout",
}
# The guide's words -> the API's enum values (pexip-api.md: snmp_mode, authentication.source).
SNMP_MODES = {"SNMPv3 read-only": "AUTHPRIV"}
AUTH_SOURCES = {"LDAP database and local database": "LDAP+LOCAL", "LDAP database": "LDAP"}
CLIENT_CERTIFICATE = {"subject CN": "CN", "subjectAltName userPrincipalName": "UPN"}
NUMBERS = {"one": 1, "two": 2, "three": 3}


def plain(text: str) -> str:
    """The guide's text without emphasis markup (and so without the * marks), whitespace collapsed per line."""
    text = re.sub(r"\*+|</?i>", "", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def plain_tabs(text: str) -> str:
    """Like :func:`plain` but keeping tabs, for rows whose columns matter."""
    return re.sub(r"\*\*|</?i>", "", text)


def snake(setting: str) -> str:
    """ "Enable TLS 1.0 (YES) *" -> "enable_tls_1_0": the setting's words, defaults dropped."""
    words = re.sub(r"\([^)]*\)|\*", " ", setting).lower()
    return re.sub(r"[^a-z0-9]+", "_", words).strip("_")


def section(text: str, start: str, end: str) -> str:
    """The text from the line ``start`` to the next line ``end``."""
    lines = text.splitlines()
    i = lines.index(start)
    j = lines.index(end, i + 1)
    return "\n".join(lines[i:j])


def bullets_after(text: str, heading: str) -> list[str]:
    """The " - *item*" lines right after the line containing ``heading``."""
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if heading in line)
    items = []
    for line in lines[i + 1 :]:
        m = re.match(r"\s*- \*([^*]+)\*\s*$", line)
        if not m:
            break
        items.append(m.group(1))
    return items


def matching_key(setting_key: str, keys: list[str]) -> list[str]:
    """Policy keys named after a setting: the same words, or its first words ("..._rather_than_reject")."""
    return [k for k in keys if setting_key == k or setting_key.startswith(k + "_")]


def value_of(word: str) -> Any:
    return {"YES": True, "NO": False}.get(word.upper(), int(word) if word.isdigit() else word)


def guide_disagreements(policy: Policy, guide: str) -> list[str]:
    """Every policy value that the guide's text contradicts, as "section.key: ..." lines."""
    out: list[str] = []
    flat = plain(guide)

    def expect(key: str, wanted: Any, actual: Any) -> None:
        if wanted != actual:
            out.append(f"{key}: the policy has {actual!r}, the guide says {wanted!r}")

    def found(pattern: str, where: str = flat) -> re.Match[str]:
        m = re.search(pattern, where)
        assert m, f"the guide no longer says {pattern!r}: update this checker"
        return m

    # Security wizard: the table rows "Setting (default)\tValue", * marking customizable ones.
    wizard = policy.security_wizard
    keys = list(wizard.settings())
    rows = [
        line.split("\t")
        for line in section(
            guide,
            "8. Complete the security wizard, providing answers as described below:",
            "* The SIP listen ports and web session limits may be customized for the target environment, as "
            "appropriate.",
        ).splitlines()
        if "\t" in line and not line.startswith("Setting\t")
    ]
    used, marked = [], []
    for setting, answer in rows:
        matched = matching_key(snake(setting), keys)
        if len(matched) != 1:
            out.append(f"security_wizard: the guide's row {setting!r} matches {matched or 'no key'}")
            continue
        used.append(matched[0])
        expect(f"security_wizard.{matched[0]}", value_of(answer.strip()), getattr(wizard, matched[0]))
        if setting.rstrip().endswith("*"):
            marked.append(matched[0])
    for key in keys:
        if key not in used:
            out.append(f"security_wizard.{key}: no row of the guide's table sets it")
    expect("security_wizard.customizable", sorted(marked), sorted(wizard.customizable))

    # Installation wizard: "- Enable incident reporting is set to no."
    install = policy.installation_wizard
    answers = re.findall(
        r"- ([^\n]+?) is set to (yes|no)\b",
        section(
            flat,
            "4. Complete the installation wizard, ensuring that:",
            "5. Use a web browser to connect to the Pexip Infinity Administrator interface and ensure that you can "
            "log in using the credentials configured in the installation wizard.",
        ),
    )
    expect("installation_wizard", len(install.settings()), len(answers))
    for setting, answer in answers:
        matched = matching_key(snake(setting), list(install.settings()))
        if len(matched) != 1:
            out.append(f"installation_wizard: the guide's {setting!r} matches {matched or 'no key'}")
        else:
            expect(f"installation_wizard.{matched[0]}", value_of(answer), getattr(install, matched[0]))

    # Global settings: the action column says what to do with each setting.
    settings = policy.global_settings
    for label, field in GLOBAL_FIELDS.items():
        action = found(rf"\n{re.escape(label)} (.+)").group(1)
        if re.search(r"\bDisable\b|\bdisabled\b", action):
            wanted: Any = False
        elif m := re.search(r"value of (\d+)|to (\d+) minutes", action):
            wanted = int(m.group(1) or m.group(2))
            if field == "management_session_timeout":
                expect("global_settings.session_timeout_enabled", True, settings.session_timeout_enabled)
        else:
            wanted = found(r"Set this to (\w+)", action).group(1).upper()
        expect(f"global_settings.{field}", wanted, getattr(settings, field))

    # Location DSCP and MTU.
    location = policy.location
    expect("location.media_qos", int(found(r"DSCP value for media is set to (\d+)").group(1)), location.media_qos)
    expect(
        "location.signalling_qos",
        int(found(r"DSCP value for signaling is set to (\d+)").group(1)),
        location.signalling_qos,
    )
    expect(
        "location.mtu", int(found(r"Configure the MTU\. We recommend a value of (\d+) bytes").group(1)), location.mtu
    )

    # SNMP.
    expect("snmp.snmp_mode", SNMP_MODES[found(r"Set SNMP mode to (SNMPv3 read-only)").group(1)], policy.snmp.snmp_mode)
    expect("snmp.forbidden_community", found(r'something other than "(\w+)"').group(1), policy.snmp.forbidden_community)

    # Network services.
    services = policy.network_services
    for key, pattern in (
        ("min_dns_servers", r"at least (\w+) DNS servers"),
        ("min_ntp_servers", r"at least (\w+) NTP servers"),
        ("min_syslog_servers", r"at least (\w+) remote syslog server"),
    ):
        expect(f"network_services.{key}", NUMBERS[found(pattern).group(1)], getattr(services, key))
    expect(
        "network_services.ntp_key_required",
        bool(re.search(r"each NTP server must include key authentication credentials", flat)),
        services.ntp_key_required,
    )

    # Administrator roles.
    roles = policy.roles
    edited = re.findall(r"Select the existing \*\*([^*]+)\*\* role and remove the following permissions:", guide)
    expect("roles.edit", edited, list(roles.edit))
    for role in edited:
        expect(
            f"roles.remove_permissions ({role})",
            bullets_after(guide, f"**{role}** role and remove"),
            list(roles.remove_permissions),
        )
    expect("roles.auditor_name", found(r'Specify a Name of "(\w+)"').group(1), roles.auditor_name)
    expect(
        "roles.auditor_permissions",
        bullets_after(guide, "Assign the following permissions to the role:"),
        list(roles.auditor_permissions),
    )
    missing = [r for r in [*edited, roles.auditor_name] if r not in roles.all_roles]
    expect("roles.all_roles (roles the guide names)", [], missing)

    # Administrator authentication, in the guide's order (the contingency deployment is not ours).
    main = flat.split("\nContingency deployment\n")[0]
    sources = re.findall(r"Set the Authentication source to (LDAP database(?: and local database)?)", main)
    expect("authentication.initial_source", AUTH_SOURCES[sources[0]], policy.authentication.initial_source)
    expect("authentication.final_source", AUTH_SOURCES[sources[-1]], policy.authentication.final_source)
    chosen = found(r"Require client certificate\tRequired \(user identity in ([^)]+)\) \*", plain_tabs(guide)).group(1)
    expect("authentication.client_certificate", CLIENT_CERTIFICATE[chosen], policy.authentication.client_certificate)
    insecure = found(r"Allow insecure transport (<input[^>]*>)").group(1)
    expect("authentication.ldap_permit_no_tls", "checked" in insecure, policy.authentication.ldap_permit_no_tls)

    # The contingency (fallback) deployment: its exceptions to the primary.
    fallback = flat.split("\nContingency deployment\n")[1]
    source = found(r"Set Authentication source to (LDAP database(?: and local database)?)\.", fallback).group(1)
    expect("contingency.authentication_source", AUTH_SOURCES[source], policy.contingency.authentication_source)
    required = found(r"Set Require client certificate to (Not required)\.", fallback).group(1)
    expect("contingency.client_certificate", {"Not required": "NO"}[required], policy.contingency.client_certificate)
    expect("contingency.licensing", "deployed without licensing" not in fallback, policy.contingency.licensing)

    # Reservation: CPU, memory and disk tables.
    reservation = policy.reservation
    cpu = section(guide, "CPU resource limits", "Memory resource limits")
    memory = section(guide, "Memory resource limits", "Disk resource limits")
    disk = section(guide, "Disk resource limits", "BIOS configuration")
    expect(
        "reservation.cpu_reservation",
        found(r"Reservation\tSelect the menu entry labeled (\w+)", cpu).group(1).lower(),
        reservation.cpu_reservation,
    )
    for key, text in (("cpu", cpu), ("memory", memory), ("disk", disk)):
        expect(
            f"reservation.{key}_shares",
            found(r"Shares\tSelect (\w+)", text).group(1).lower(),
            getattr(reservation, f"{key}_shares"),
        )
    for key, text in (("cpu_limit", cpu), ("memory_limit", memory)):
        identical = bool(re.search(r"values for \*\*Reservation\*\* and \*\*Limit\*\* should thus be identical", text))
        expect(f"reservation.{key}", "equal_to_reservation" if identical else "?", getattr(reservation, key))
    expect(
        "reservation.memory_reserve_all_locked",
        "Reserve all guest memory (All locked)" in memory,
        reservation.memory_reserve_all_locked,
    )
    expect(
        "reservation.disk_iops_limit_required",
        bool(re.search(r"Limit - IOPs\tEnter the appropriate number of IOPs", disk)),
        reservation.disk_iops_limit_required,
    )

    # VLAN.
    reserved = {
        int(v) for v in re.findall(r"must not use VLAN ID (\d+) \(which is reserved for virtual guest tagging\)", flat)
    }
    expect("vlan.forbidden", sorted(reserved), sorted(policy.vlan.forbidden))
    expect("vlan.max", min(reserved) - 1, policy.vlan.max)

    # BIOS.
    bios = policy.bios
    scsi = found(r"ensure that VMware Virtual SCSI Hard Drive \((\d):(\d)\) is the first entry")
    expect("bios.boot_first", f"scsi{scsi.group(1)}:{scsi.group(2)}", bios.boot_first)
    expect(
        "bios.force_setup",
        "This option should be selected to force entry to the BIOS on the next boot." in flat,
        bios.force_setup,
    )
    expect("bios.supervisor_password", "Configure a Supervisor password" in flat, bios.supervisor_password)
    expect("bios.save_and_exit", "Select the Exit Saving Changes option." in flat, bios.save_and_exit)

    # Gate: the security wizard cannot be undone.
    expect("gates.security_wizard_approval", "it cannot be re-enabled" in flat, policy.gates.security_wizard_approval)
    return out


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE_PATH.read_text()


def test_policy_agrees_with_the_guide(guide):
    """Every value in secure-mode-policy.toml is the one the guide's text prescribes."""
    assert guide_disagreements(load_policy(), guide) == []


# Each case: an edit of the policy file that contradicts the guide, and the key the checker must name.
TAMPERED = [
    ("enable_tls_1_0 = false", "enable_tls_1_0 = true", "security_wizard.enable_tls_1_0"),  # a wizard answer flipped
    (
        "active_per_user_management_web_sessions = 10",
        "active_per_user_management_web_sessions = 20",
        "security_wizard.active_per_user_management_web_sessions",
    ),  # a wizard number changed
    ('    "sip_udp_listen_port",\n', "", "security_wizard.customizable"),  # a * row no longer customizable
    (
        "enable_incident_reporting = false",
        "enable_incident_reporting = true",
        "installation_wizard.enable_incident_reporting",
    ),  # incident reporting on
    (
        "send_deployment_and_usage_statistics = false",
        "send_deployment_and_usage_statistics = true",
        "installation_wizard.send_deployment_and_usage_statistics",
    ),  # statistics on
    ("management_qos = 16", "management_qos = 0", "global_settings.management_qos"),  # DSCP 16
    ("media_qos = 51", "media_qos = 46", "location.media_qos"),  # DSCP 51
    ("signalling_qos = 40", "signalling_qos = 24", "location.signalling_qos"),  # DSCP 40
    ("mtu = 1400", "mtu = 1500", "location.mtu"),  # MTU 1400
    (
        "management_session_timeout = 10",
        "management_session_timeout = 30",
        "global_settings.management_session_timeout",
    ),  # timeout 10
    ("enable_ssh = false", "enable_ssh = true", "global_settings.enable_ssh"),  # SSH on
    ('ocsp_state = "OVERRIDE"', 'ocsp_state = "ON"', "global_settings.ocsp_state"),  # OCSP not overridden
    ('snmp_mode = "AUTHPRIV"', 'snmp_mode = "STANDARD"', "snmp.snmp_mode"),  # not SNMPv3 read-only
    ("min_dns_servers = 2", "min_dns_servers = 1", "network_services.min_dns_servers"),  # 2 DNS
    ("min_ntp_servers = 2", "min_ntp_servers = 1", "network_services.min_ntp_servers"),  # 2 NTP
    ("ntp_key_required = true", "ntp_key_required = false", "network_services.ntp_key_required"),  # NTP with key
    ("min_syslog_servers = 1", "min_syslog_servers = 0", "network_services.min_syslog_servers"),  # 1 syslog
    (
        'remove_permissions = ["May view logs", "May generate system snapshot"]',
        'remove_permissions = ["May view logs"]',
        "roles.remove_permissions",
    ),  # one removed permission forgotten
    ('    "May use API",\n', "", "roles.auditor_permissions"),  # an auditor permission dropped
    (
        'initial_source = "LDAP+LOCAL"',
        'initial_source = "LDAP"',
        "authentication.initial_source",
    ),  # lock-out order broken
    ('client_certificate = "NO"', 'client_certificate = "CN"', "contingency.client_certificate"),  # fallback lock-out
    ("licensing = false", "licensing = true", "contingency.licensing"),  # the fallback licensed
    ("forbidden = [4095]", "forbidden = [4094]", "vlan.forbidden"),  # VLAN 4095
    ('boot_first = "scsi0:0"', 'boot_first = "scsi0:1"', "bios.boot_first"),  # boot disk
    ('cpu_shares = "normal"', 'cpu_shares = "high"', "reservation.cpu_shares"),  # shares normal
    (
        "security_wizard_approval = true",
        "security_wizard_approval = false",
        "gates.security_wizard_approval",
    ),  # irreversible step ungated
]


@pytest.mark.parametrize(("old", "new", "key"), TAMPERED)
def test_checker_reports_a_tampered_policy(guide, tmp_path, old, new, key):
    """A policy copy edited against the guide still loads, and the checker names the edited key."""
    text = POLICY_PATH.read_text()
    assert text.count(old) == 1
    path = tmp_path / "tampered.toml"
    path.write_text(text.replace(old, new))
    problems = guide_disagreements(load_policy(path), guide)
    assert any(p.startswith(key) for p in problems), problems


# --- the quotes in the policy file -------------------------------------------------------


def policy_lines() -> list[tuple[str, list[str], str]]:
    """(section, comment lines just above, key) for every key line of the policy file."""
    found, current, comments = [], "", []
    for line in POLICY_PATH.read_text().splitlines():
        if m := re.match(r"\[(\w+)\]$", line):
            current, comments = m.group(1), []
        elif line.startswith("#"):
            comments.append(line)
        elif m := re.match(r"(\w+) = ", line):
            found.append((current, comments, m.group(1)))
            comments = []
        elif not line.startswith((" ", "]")):
            comments = []
    return found


def test_every_guide_value_quotes_the_guide(guide):
    """Each key of a guide section carries a `guide:` comment whose quote is the guide's own words."""
    text = " ".join(plain(guide).split())
    lines = policy_lines()
    assert len(lines) > 60
    for section_name, comments, key in lines:
        quotes = [m.group(1) for c in comments if (m := re.match(r'# guide: "(.*)"$', c))]
        if section_name in ("retry", "concurrency", "journal"):
            assert any(c.startswith("# orchestrator:") for c in comments), (
                f"{section_name}.{key} says where it comes from"
            )
            continue
        assert quotes, f"{section_name}.{key} has no guide: quote"
        for quote in quotes:
            assert " ".join(quote.replace("*", "").split()) in text, (
                f"{section_name}.{key}: not in the guide: {quote!r}"
            )


def test_quote_check_catches_a_made_up_quote(guide):
    """The quote check compares against the guide, so invented wording would not pass."""
    text = " ".join(plain(guide).split())
    assert "Enable TLS 1.0 (YES) NO" in text
    assert "Enable TLS 1.0 (YES) YES" not in text
