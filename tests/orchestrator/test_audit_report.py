"""`orchestrator audit` on a finished simulated deployment: every control passes; a setting broken
behind the orchestrator's back (in the twin's world) fails its control, with expected and observed
values, while the others still pass; the report's SHA-256 is journaled and the journal verifies."""

from __future__ import annotations

import copy
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from adapters.sim.world import SimWorld
from journal import Journal, kinds
from orchestrator import api
from orchestrator.audit import AuditOutcome, AuditReport, check
from orchestrator.cli import cli
from tests.orchestrator.conftest import simulate

MGR, CONF = "pexip-mgr", "pexip-conf-00001"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> api.SimulationSettings:
    """One simulated deployment (a Management Node and a Conferencing Node) driven to ldap_authenticated."""
    import asyncio

    tmp = tmp_path_factory.mktemp("audit")
    settings = api.SimulationSettings(nodes=2, latency=0.0, world=tmp / "world.sqlite", journal=tmp / "journal.sqlite")
    report, _ = asyncio.run(simulate(settings))
    assert report.exit_code == 0
    return settings


def _settings(sim: api.SimulationSettings) -> api.SessionSettings:
    return api.SessionSettings(journal=sim.journal, actor="auditor")


async def _audit(sim: api.SimulationSettings, **options: Any) -> AuditOutcome:
    return await api.audit(_settings(sim), **options)


async def _check(sim: api.SimulationSettings, nodes: list[str] | None = None) -> AuditReport:
    """The audit's checks alone, over the simulation's world (no journal: the break cases stay fast)."""
    from orchestrator._worlds import recorded_simulation
    from orchestrator.wiring import open_systems

    deployment, world = recorded_simulation({"nodes": 2, "world": str(sim.world)})
    try:
        systems = open_systems(deployment, world, journal=sim.journal)
        try:
            return await check(deployment, systems, nodes)
        finally:
            await systems.aclose()
    finally:
        world.close()


@contextmanager
def broken(sim: api.SimulationSettings, system: str, key: str, mutate: Callable[[Any], Any]) -> Iterator[None]:
    """Change one object of the twin's world behind the orchestrator's back; put it back afterwards.

    The world is written from a thread of its own (its own event loop): the async tests hold one.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def put(value: Any) -> None:
        world = SimWorld.open(sim.world)
        try:
            await world.apply([(system, key, value)])
        finally:
            await world.aclose()

    world = SimWorld.open(sim.world)
    original = world.get(system, key)
    world.close()
    changed = mutate(copy.deepcopy(original))
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, put(changed)).result()
        try:
            yield
        finally:
            pool.submit(asyncio.run, put(original)).result()


def _set(path: str, value: Any) -> Callable[[Any], Any]:
    """A mutation that sets one dotted path of an object (``None`` as value of a missing key: delete it)."""

    def mutate(obj: Any) -> Any:
        *parents, last = path.split(".")
        target = obj
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
        return obj

    return mutate


_DELETE = object()
VM, GLOBAL = "vsphere:vm", "pexip:global"


def _failing(report: AuditReport) -> set[tuple[str, str]]:
    return {(r.control.id, r.node) for r in report.results if r.status in ("fail", "error")}


def _result(report: AuditReport, control: str, node: str) -> Any:
    return next(r for r in report.results if r.control.id == control and r.node == node)


async def test_a_finished_deployment_passes_every_control(finished: api.SimulationSettings) -> None:
    """Every control applicable to a node passes; the others are not applicable; exit code 0 material."""
    outcome = await _audit(finished)
    assert outcome.report.passed
    statuses = {r.status for r in outcome.report.results}
    assert statuses == {"pass", "not_applicable"}
    assert {r.node for r in outcome.report.results if r.status == "pass"} == {MGR, CONF}
    assert outcome.report.summary["pass"] >= 40


# (system, key, mutation, control that fails, node, field, expected, observed, also failing)
BREAKS: list[tuple[Any, ...]] = [
    # VM reservations: a CPU limit below the reservation (bursting capped, no longer "identical").
    (VM, MGR, _set("reservation.cpu_limit_mhz", 4800), "SM-VM-RES-1", MGR, "cpu_limit_mhz", 9600, 4800, set()),
    # Disk: the IOPS limit taken off.
    (VM, CONF, _set("disks.0.iops_limit", -1), "SM-VM-RES-3", CONF, "disk[Hard disk 1].iops_limit", 1000, -1, set()),
    # BIOS: boot order changed at the console.
    (VM, CONF, _set("bios.boot_disk_first", False), "SM-BIOS-1", CONF, "boot_disk_first", True, False, set()),
    # BIOS: the lock marker gone.
    (VM, MGR, _set("bios.locked_marker", False), "SM-BIOS-2", MGR, "locked_marker", True, False, set()),
    # Global settings: chat enabled again.
    (GLOBAL, "1", _set("enable_chat", True), "SM-GLB-1", MGR, "global.enable_chat", False, True, set()),
    # Network services: an NTP server's key changed.
    ("pexip:ntp_server", "2", _set("key_id", 9), "SM-NET-2", MGR, "ntp_server[10.16.0.5].key_id", 2, 9, set()),
    # SNMP on a Conferencing Node: community back to "public".
    (
        "pexip:worker_vm",
        "1",
        _set("snmp_community", "public"),
        "SM-SNMP-2",
        CONF,
        "snmp.snmp_community",
        "pexip-sim",
        "public",
        set(),
    ),
    # Locations: MTU 1500 on the second location.
    (
        "pexip:system_location",
        "2",
        _set("mtu", 1500),
        "SM-LOC-2",
        MGR,
        "system_location[sim-west].mtu",
        1400,
        1500,
        set(),
    ),
    # Certificates: SIP TLS verification off.
    (
        GLOBAL,
        "1",
        _set("sip_tls_cert_verify_mode", "OFF"),
        "SM-CRT-4",
        MGR,
        "global.sip_tls_cert_verify_mode",
        "ON",
        "OFF",
        set(),
    ),
    # Certificates: the Conferencing Node's SIP TLS FQDN no longer its certificate's name.
    (
        "pexip:worker_vm",
        "1",
        _set("alternative_fqdn", "other.example.com"),
        "SM-CRT-3",
        CONF,
        "worker_vm.alternative_fqdn",
        "conf00001.sim.example.com",
        "other.example.com",
        set(),
    ),
    # Roles: the Auditor loses a permission.
    (
        "pexip:role",
        "3",
        lambda role: {**role, "permissions": role["permissions"][1:]},
        "SM-ROLE-2",
        MGR,
        "role[Auditor].permissions",
        None,
        None,
        set(),
    ),
    # LDAP: another group search base.
    (
        "pexip:authentication",
        "1",
        _set("ldap_group_search_dn", "ou=elsewhere"),
        "SM-LDAP-1",
        MGR,
        "authentication.ldap_group_search_dn",
        None,
        "ou=elsewhere",
        set(),
    ),
    # Authentication: local login enabled again.
    (
        "pexip:authentication",
        "1",
        _set("source", "LDAP+LOCAL"),
        "SM-AUTH-2",
        MGR,
        "authentication.source",
        "LDAP",
        "LDAP+LOCAL",
        set(),
    ),
    # Wizards: the console shows the security wizard not run.
    (
        "console:node",
        MGR,
        _set("wizard_state", "installed"),
        "SM-WIZ-3",
        MGR,
        "security_wizard",
        None,
        "not run",
        set(),
    ),
]


@pytest.mark.parametrize(
    ("system", "key", "mutate", "control", "node", "field", "expected", "observed", "also"),
    BREAKS,
    ids=[b[3] for b in BREAKS],
)
async def test_a_setting_broken_behind_the_orchestrators_back_fails_its_control_only(
    finished: api.SimulationSettings,
    system: str,
    key: str,
    mutate: Callable[[Any], Any],
    control: str,
    node: str,
    field: str,
    expected: Any,
    observed: Any,
    also: set[tuple[str, str]],
) -> None:
    """The broken control fails on its node with the field's expected and observed values; the others pass."""
    with broken(finished, system, key, mutate):
        report = await _check(finished)
    assert _failing(report) == {(control, node), *also}
    result = _result(report, control, node)
    assert result.status == "fail" and field in result.observed, result
    if expected is not None:
        assert result.expected[field] == expected
    if observed is not None:
        assert result.observed[field] == observed
    assert result.expected[field] != result.observed[field]
    assert not report.passed


async def test_a_vm_gone_fails_its_deployment_and_errors_what_cannot_be_observed(
    finished: api.SimulationSettings,
) -> None:
    """A deleted VM: SM-VM-DEP-1 fails, the reservation and BIOS controls are errors naming the node."""
    with broken(finished, VM, CONF, lambda vm: None):
        report = await _check(finished, nodes=[CONF])
    assert _result(report, "SM-VM-DEP-1", CONF).status == "fail"
    for c in ("SM-VM-RES-1", "SM-BIOS-1"):
        assert _result(report, c, CONF).status == "error"
        assert CONF in _result(report, c, CONF).reason
    assert report.nodes == [CONF]


async def test_a_field_this_version_lacks_is_not_settable_not_failed(finished: api.SimulationSettings) -> None:
    """legacy_api_http absent from global/1/ (Pexip v41): SM-GLB-6 is "not settable on this version"."""
    with broken(finished, GLOBAL, "1", _set("legacy_api_http", _DELETE)):
        report = await _check(finished)
    result = _result(report, "SM-GLB-6", MGR)
    assert result.status == "not_settable" and "not settable on this version" in result.reason
    assert report.passed  # not a failure: nothing the orchestrator could set


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.seen: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        self.attrs += attrs
        if tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"</{tag}> closes {self.open[-1:]}"


async def test_html_report_is_self_contained_balanced_and_escaped(
    finished: api.SimulationSettings, tmp_path: Path
) -> None:
    """A banner with markup shows escaped; the page has no script, no external asset, balanced tags."""
    banner = '<script>alert("x")</script>&'
    with broken(finished, GLOBAL, "1", _set("logon_banner", banner)):
        outcome = await _audit(finished, fmt="html", output=tmp_path / "audit.html")
    page = (tmp_path / "audit.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "SM-GLB-8" in page
    assert "<script" not in page and "&lt;script&gt;" in page
    parser = _Tags()
    parser.feed(page)
    assert parser.open == [] and {"html", "head", "style", "body", "table"} <= parser.seen
    assert not [a for a in parser.attrs if a[0] in ("src", "href")]
    assert _result(outcome.report, "SM-GLB-8", MGR).status == "fail"


async def test_json_report_has_the_fields_and_its_sha256_is_journaled(
    finished: api.SimulationSettings, tmp_path: Path
) -> None:
    """JSON: id, guide words, expected, observed, status, evidence, time; the journaled SHA-256 is the file's."""
    out = tmp_path / "audit.json"
    outcome = await _audit(finished, fmt="json", output=out)
    body = json.loads(out.read_text())
    assert body["passed"] is True and body["nodes"] == [MGR, CONF]
    row = next(r for r in body["results"] if r["control"] == "SM-VM-RES-1" and r["node"] == MGR)
    for key in ("group", "title", "section", "guide", "steps", "role", "status", "expected", "observed", "evidence"):
        assert key in row
    assert row["evidence"]["cpu_reservation_mhz"] == row["evidence"]["cpu_limit_mhz"] > 0
    assert row["policy"] == {
        "reservation.cpu_reservation": "maximum",
        "reservation.cpu_limit": "equal_to_reservation",
        "reservation.cpu_shares": "normal",
    }
    assert row["at"].endswith("+00:00")
    ldap = next(r for r in body["results"] if r["control"] == "SM-LDAP-3" and r["node"] == MGR)
    groups = {k: v for k, v in ldap["evidence"].items() if k.startswith("ldap_group[")}
    assert len(groups) == 3 and set(groups.values()) == {"in the directory"}  # read from the directory itself
    with Journal.open(finished.journal, readonly=True) as journal:
        event = journal.last_event(None, kind=kinds.AUDIT_REPORT)
    assert event is not None and event.seq == outcome.seq
    assert event.payload["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == outcome.sha256
    assert event.payload["output"] == str(out.resolve()) and event.payload["format"] == "json"
    verification = api.verify(_settings(finished))
    assert verification.report.ok, verification.report


async def test_the_audit_writes_nothing_to_the_systems_and_no_secret_to_the_report(
    finished: api.SimulationSettings,
) -> None:
    """The world's state is byte-for-byte the same after an audit; no configured secret is in the report."""
    from orchestrator._worlds import recorded_simulation

    def state() -> list[tuple[str, str, str]]:
        with closing(sqlite3.connect(finished.world)) as conn:
            return conn.execute("SELECT system, key, value FROM kv ORDER BY system, key").fetchall()

    before = state()
    outcome = await _audit(finished, fmt="json")
    assert state() == before
    deployment, world = recorded_simulation({"nodes": 2, "world": str(finished.world)})
    world.close()
    secrets = [s.reveal() for s in deployment.secrets() if s.available() is None]
    assert [s for s in secrets if s and s in outcome.text] == []
    assert len([s for s in secrets if s]) >= 3


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ([], 0),  # every control passes
        (["--format", "json", CONF], 0),
        (["no-such-node"], 2),  # bad input names NODE
        (["--format", "pdf"], 2),
    ],
)
def test_cli_exit_codes(finished: api.SimulationSettings, args: list[str], code: int) -> None:
    """0 when every control passes, 2 on bad input; the text table goes to stdout, the SHA-256 line to stderr."""
    result = CliRunner().invoke(cli, ["--journal", str(finished.journal), "audit", *args])
    assert result.exit_code == code, result.output
    if code == 0:
        assert "sha256" in result.stderr and ("SM-BIOS-1" in result.stdout)


def test_cli_exits_1_when_a_control_fails(finished: api.SimulationSettings) -> None:
    """A failing control makes `orchestrator audit` exit 1 (the failed-check code) and say NOT COMPLIANT."""
    with broken(finished, GLOBAL, "1", _set("enable_ssh", True)):
        result = CliRunner().invoke(cli, ["--journal", str(finished.journal), "audit"])
    assert result.exit_code == 1, result.output
    assert "SM-GLB-4" in result.stdout and "NOT COMPLIANT" in result.stdout
