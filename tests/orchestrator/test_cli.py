"""The command line: exit codes, --json outputs, bad input, integrity, and secrets kept out of every record."""

from __future__ import annotations

import ast
import json
import re
import sqlite3
from pathlib import Path

import pytest

from orchestrator.cli import cli
from tests.orchestrator.cli_helpers import CLIENT_KEY, ROOT, SECRETS, invoke, sim_config, sim_env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return sim_config(sim_env(tmp_path, monkeypatch))


def test_run_without_approval_waits_then_finishes_after_approve(env: Path, tmp_path: Path) -> None:
    """run exits 3 at the security-wizard gate; approve + resume exits 0 with every node done."""
    code, out, err = invoke("-c", str(env), "run")
    assert code == 3, out + err
    assert "security_wizard" in out
    code, out, _ = invoke("-c", str(env), "status", "--json")
    status = json.loads(out)
    mgr = next(n for n in status["nodes"] if n["role"] == "management")
    assert (mgr["state"], mgr["gate"], mgr["next"]["action"]) == ("awaiting_approval", "security_wizard", "wait")
    assert {
        "node",
        "role",
        "state",
        "step",
        "attempt",
        "gate",
        "last_error",
        "failed_from",
        "maintenance",
        "lease",
        "updated_at",
        "next",
    } <= set(mgr)
    code, out, _ = invoke(
        "-c", str(env), "approve", mgr["node"], "security_wizard", "--by", "alice", "--reason", "CHG-42"
    )
    assert code == 0
    code, out, err = invoke("-c", str(env), "resume", "--all")
    assert code == 0, out + err
    code, out, _ = invoke("-c", str(env), "status", "--json")
    assert {n["state"] for n in json.loads(out)["nodes"]} == {"ldap_authenticated"}


def test_no_secret_reaches_the_journal_the_logs_or_an_export(env: Path, tmp_path: Path) -> None:
    """Every secret value of the configuration is absent from the journal file, logs and exports."""
    outputs = []
    for args in (
        ["run"],
        ["approve", "pexip-mgr", "security_wizard", "--by", "alice"],
        ["--log-level", "DEBUG", "resume", "--all"],
    ):
        code, out, err = invoke("-c", str(env), *args)
        outputs += [out, err]
    code, out, _ = invoke("-c", str(env), "status", "--json")
    assert {n["state"] for n in json.loads(out)["nodes"]} == {"ldap_authenticated"}
    for fmt in ("jsonl", "csv"):
        code, out, err = invoke("-c", str(env), "journal", "export", "--format", fmt)
        assert code == 0
        outputs += [out, err]
    blobs = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and "journal" in p.name)
    assert blobs, "the journal files exist"
    for value in [*SECRETS.values(), CLIENT_KEY]:
        assert value.encode() not in blobs, f"secret {value} in the journal"
        for text in outputs:
            assert value not in text, f"secret {value} in output"


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda t: t.replace("vlan = 100", "vlan = 4095", 1), "vlan"),  # VLAN reserved for guest tagging
        (
            lambda t: t.replace('password = "env:BIOS_PASSWORD"', 'password = "hunter2hunter2"'),
            "bios.password",
        ),  # inline secret
        (lambda t: t.replace("[vcenter]", "[vcenter]\ncolour = 1", 1), "vcenter.colour"),  # unknown key
    ],
)
def test_bad_configuration_exits_2_naming_the_field(env: Path, edit: object, field: str) -> None:
    """Bad input: exit 2, the field named, nothing journaled."""
    env.write_text(edit(env.read_text()))  # type: ignore[operator]
    code, out, err = invoke("-c", str(env), "run")
    assert code == 2
    assert field in err
    assert not Path("orchestrator.journal.sqlite").exists()


def test_missing_configuration_exits_2() -> None:
    """A missing config file is bad input with the fix."""
    code, _, err = invoke("-c", "nope.toml", "run")
    assert code == 2 and "nope.toml" in err


def test_approve_refuses_unknown_gates_and_nodes(env: Path) -> None:
    """approve names the valid gates and nodes when given wrong ones (exit 2)."""
    invoke("-c", str(env), "run", "--until", "deployed")
    code, _, err = invoke("-c", str(env), "approve", "pexip-mgr", "no_gate", "--by", "x")
    assert code == 2 and "security_wizard" in err
    code, _, err = invoke("-c", str(env), "approve", "ghost", "security_wizard", "--by", "x")
    assert code == 2 and "ghost" in err


def _public_key(env: Path, tmp_path: Path) -> Path:
    code, pem, err = invoke("-c", str(env), "journal", "public-key")
    assert code == 0 and pem.startswith("-----BEGIN PUBLIC KEY-----"), err
    path = tmp_path / "auditor.pub.pem"
    path.write_text(pem)
    return path


def test_journal_verify_exits_4_on_tampering(env: Path, tmp_path: Path) -> None:
    """An event edited with the sqlite3 shell makes `journal verify --public-key` exit 4, naming its seq."""
    assert invoke("-c", str(env), "run", "pexip-mgr", "--until", "reserved")[0] == 0
    key = _public_key(env, tmp_path)
    code, out, err = invoke("-c", str(env), "journal", "verify", "--public-key", str(key))
    assert code == 0 and "VERIFIED" in out, out + err
    with sqlite3.connect("orchestrator.journal.sqlite") as db:
        db.execute("UPDATE events SET actor = 'mallory' WHERE seq = 3")
    code, _, err = invoke("-c", str(env), "journal", "verify", "--public-key", str(key))
    assert code == 4 and "3" in err


def test_journal_verify_without_a_trusted_key_is_unverified(tmp_path: Path, env: Path) -> None:
    """Without --public-key and without a configured or simulation key, verify prints UNVERIFIED and exits 4."""
    assert invoke("-c", str(env), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    code, out, err = invoke(
        "--journal", "orchestrator.journal.sqlite", "-c", str(tmp_path / "none.toml"), "journal", "verify"
    )
    assert code == 2  # a configuration named but missing is bad input, never "no key, fine"
    from orchestrator._trust import generated_key_path

    generated_key_path(tmp_path / "orchestrator.journal.sqlite").unlink()
    code, out, err = invoke("-c", str(env), "journal", "verify")
    assert code == 4 and "UNVERIFIED" in err, out + err
    code, out, err = invoke("-c", str(env), "journal", "verify", "--chain-only")
    assert code == 0 and "CHAIN_ONLY" in out and "signatures not checked" in out


def test_export_verify_catches_an_edited_line(env: Path, tmp_path: Path) -> None:
    """An export is written 0600 and verifies with the public key; the same export with one edited line exits 4."""
    assert invoke("-c", str(env), "run", "pexip-mgr", "--until", "deployed")[0] == 0
    key = _public_key(env, tmp_path)
    out = tmp_path / "audit.jsonl"
    assert invoke("-c", str(env), "journal", "export", "-o", str(out))[0] == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert invoke("-c", str(env), "journal", "verify", str(out), "--public-key", str(key))[0] == 0
    lines = out.read_text().splitlines()
    edited = next(i for i, line in enumerate(lines) if '"kind":"step_committed"' in line)
    lines[edited] = lines[edited].replace('"step":"deploy_ova"', '"step":"reserve_resources"')
    assert lines[edited] != out.read_text().splitlines()[edited]
    out.write_text("\n".join(lines) + "\n")
    assert invoke("-c", str(env), "journal", "verify", str(out), "--public-key", str(key))[0] == 4


def test_dry_run_prints_a_plan_and_changes_nothing(env: Path) -> None:
    """run --dry-run --json lists the first step's change per node; nothing is created (no journal, no world)."""
    before = sorted(p.relative_to(env.parent) for p in env.parent.rglob("*"))
    code, out, err = invoke("-c", str(env), "run", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)["nodes"]
    assert plan["pexip-mgr"][0]["status"] == "change"
    assert not Path("orchestrator.journal.sqlite").exists()
    assert sorted(p.relative_to(env.parent) for p in env.parent.rglob("*")) == before


def test_every_command_has_help() -> None:
    """Each command and group documents itself (and the README lists them)."""
    readme = (ROOT / "README.md").read_text()

    def walk(group: object, prefix: str) -> list[tuple[str, object]]:
        out = []
        for name, cmd in group.commands.items():  # type: ignore[attr-defined]
            out.append((f"{prefix}{name}", cmd))
            if hasattr(cmd, "commands"):
                out += walk(cmd, f"{prefix}{name} ")
        return out

    for name, cmd in walk(cli, ""):
        assert cmd.help, name  # type: ignore[attr-defined]
        *group, leaf = name.split()
        documented = any(
            f"orchestrator {' '.join(group + [leaf])}" in line
            or (group and f"orchestrator {' '.join(group)}" in line and leaf in line)
            for line in readme.splitlines()
        )
        assert documented, f"README does not document `orchestrator {name}`"


def test_failed_step_exits_1_with_json_logs_and_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A permanent fault: exit 1, a JSON error log line naming node and step, status shows the reason."""
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("simulate", "--nodes", "2", "--faults", "permanent=snmpv3@pexip-mgr")
    assert code == 1
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    failed = [r for r in records if r.get("event") == "step failed"]
    assert (
        failed and failed[0]["node"] == "pexip-mgr" and failed[0]["step"] == "snmpv3" and failed[0]["level"] == "error"
    )
    assert "resume" in out
    code, out, _ = invoke("status", "pexip-mgr", "--json")
    node = json.loads(out)["nodes"][0]
    assert (node["state"], node["failed_from"], node["next"]["action"]) == ("failed", "hardening", "stopped")
    assert "injected permanent fault" in node["last_error"]


def _openssl(*args: str, cwd: Path) -> None:
    import subprocess

    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_a_command_ca_signs_every_csr_with_no_one_in_between(env: Path, tmp_path: Path) -> None:
    """`[pki] mode = "command"` with a real `openssl ca`: after the one approval the run ends by itself."""
    from _openssl_ca import openssl_ca

    from config.load import simulated_deployment

    spec = openssl_ca(tmp_path, simulated_deployment(1, tmp_path / "unused").pki)
    (tmp_path / "certs" / "ca-chain.pem").write_text((tmp_path / "pki" / "ca-chain.pem").read_text())
    table = '[pki]\nmode = "command"\ncommand = ' + json.dumps(list(spec.command))  # a TOML array of strings
    env.write_text(env.read_text().replace('[pki]\nmode = "sim"', table))
    assert invoke("-c", str(env), "run")[0] == 3  # the security wizard's approval first
    invoke("-c", str(env), "approve", "pexip-mgr", "security_wizard", "--by", "alice")
    code, out, err = invoke("-c", str(env), "resume", "--all")
    assert code == 0, out + err
    signed = (tmp_path / "ca" / "index.txt").read_text().splitlines()
    assert len(signed) == len(list((tmp_path / "pki" / "outbox").glob("*.csr"))) == 4  # once per node


def test_manual_ca_with_openssl_signing_every_csr(env: Path, tmp_path: Path) -> None:
    """A manual CA: each node waits with its CSR in the outbox; openssl signs it; cert import; the run ends."""
    text = (
        env.read_text()
        .replace('[pki]\nmode = "sim"', '[pki]\nmode = "manual"')
        .replace('key_type = "RSA2048"', 'key_type = "ECDSAP256"')
    )
    env.write_text(text)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "certs/ca-chain.pem",
        "-subj",
        "/CN=Test Root CA",
        "-days",
        "30",
        cwd=tmp_path,
    )
    assert invoke("-c", str(env), "run")[0] == 3  # the security wizard's approval first
    invoke("-c", str(env), "approve", "pexip-mgr", "security_wizard", "--by", "alice")
    signed: set[str] = set()
    hosts = {h: n for n, h in re.findall(r'^name = "(pexip-[^"]+)"\nhostname = "([^"]+)"', text, re.M)}
    for _ in range(8):
        code, out, err = invoke("-c", str(env), "resume", "--all")
        if code == 0:
            break
        assert code == 3, out + err
        assert "cert import" in out
        outbox = tmp_path / "pki" / "outbox"
        for csr in sorted(outbox.glob("*.csr")):
            # <subject-name>.csr, as Pexip's generator names it: the node's FQDN (pexmgr.example.com: pexip-mgr)
            node = hosts[csr.stem.split(".")[0]]
            if node in signed:
                continue
            # The CSR is Pexip's own; openssl, an independent CA here, checks and signs it.
            _openssl("req", "-in", str(csr), "-noout", "-verify", cwd=tmp_path)
            _openssl(
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                "certs/ca-chain.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{node}.pem",
                "-days",
                "30",
                "-copy_extensions",
                "copy",
                cwd=tmp_path,
            )
            assert invoke("-c", str(env), "cert", "import", node, str(tmp_path / f"{node}.pem"))[0] == 0
            signed.add(node)
    assert code == 0
    assert signed == {"pexip-mgr", "pexip-conf-01", "pexip-conf-02", "pexip-conf-03"}
    code, out, _ = invoke("-c", str(env), "status", "--json")
    assert {n["state"] for n in json.loads(out)["nodes"]} == {"ldap_authenticated"}


CLI_SOURCES = [
    ROOT / "orchestrator" / name
    for name in (
        "cli.py",
        "_cli_base.py",
        "_cli_groups.py",
        "_cli_config.py",
        "_cli_serve.py",
        "_cli_audit.py",
        "_cli_daemon.py",
    )
]
# Names whose use in cli.py would mean it opens or wires something itself instead of asking the library.
NOT_IN_CLI = {
    "SimWorld",
    "Journal",
    "open_systems",
    "needs_world",
    "get_meta",
    "set_meta",
    "simulated_deployment",
    "load_deployment",
    "verify_export",
    "Engine",
}


def test_cli_imports_no_adapter_or_journal_and_opens_nothing_itself() -> None:
    """cli.py imports nothing from adapters or journal and never names the world, the journal or the wiring."""

    for source in CLI_SOURCES:
        _imports_no_adapter_or_journal(ast.parse(source.read_text()))


def _imports_no_adapter_or_journal(tree: ast.Module) -> None:
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in modules if m.split(".")[0] in {"adapters", "journal"}}, modules
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & NOT_IN_CLI, sorted(names & NOT_IN_CLI)


def test_every_command_calls_one_library_function() -> None:
    """Each click command calls one function of orchestrator.api (besides opening the journal it works on)."""

    trees = [ast.parse(source.read_text()) for source in CLI_SOURCES]
    commands = [
        f
        for tree in trees
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
        and any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
            for d in f.decorator_list
        )
    ]
    assert len(commands) >= 10
    framing = {"open_existing_journal", "SimulationSettings"}
    for command in commands:
        calls = [
            n.func.attr
            for n in ast.walk(command)
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id == "api"
            and n.func.attr not in framing
        ]
        allowed = 2 if command.name == "run" else 1  # run --dry-run is api.plan, the plan of the same run
        assert len(calls) <= allowed, f"{command.name} calls {calls}"


def test_help_imports_nothing_heavy() -> None:
    """`orchestrator --help` loads neither the library, the adapters, the journal nor rich."""
    import subprocess
    import sys

    code = (
        "import sys; from orchestrator.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='orchestrator')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'adapters', 'journal', 'rich', 'structlog'}"
        " or m in {'orchestrator.api', 'orchestrator.engine'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
