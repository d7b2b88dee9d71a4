"""Nothing is written before every check passed (issue #7, finding 9): each mistake is exit 2, one report, no file.

Each test makes the mistake in an otherwise runnable copy of the example (files present, the
systems without a built real adapter simulated), runs the CLI in the copy's directory and
checks that the directory holds exactly what it held before: no journal, key or world.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from config.load import load_deployment
from orchestrator.cli import cli
from tests.config.conftest import EXAMPLE, write_example_files, write_runnable_example


def _tree(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*"))


def _refused(directory: Path, config: Path, *command: str) -> str:
    """Run the command; assert exit 2 and an unchanged directory; return stderr."""
    before = _tree(directory)
    result = CliRunner().invoke(cli, ["-c", str(config), *command], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert _tree(directory) == before, "a file was created before every check passed"
    return result.stderr


def _replace(old: str, new: str) -> Callable[[Path], None]:
    def edit(config: Path) -> None:
        text = config.read_text()
        assert text.count(old) == 1, old
        config.write_text(text.replace(old, new))

    return edit


def _remove(relative: str) -> Callable[[Path], None]:
    return lambda config: (config.parent / relative).unlink()


def _garble(relative: str) -> Callable[[Path], None]:
    return lambda config: (config.parent / relative).write_text("not a certificate\n")


def _real_ldap_without_its_ca(config: Path) -> None:
    _replace('[ldap]\nmode = "sim"', '[ldap]\nmode = "real"')(config)
    # ldap.ca_file shares certs/ca-chain.pem with pki.ca_chain: point the [ldap] one at a file not there.
    config.write_text(
        re.sub(r'(\[ldap\][^\[]*?)ca_file = "[^"]*"', r'\1ca_file = "certs/ldap-ca.pem"', config.read_text())
    )


def _real_console_without_its_host_keys(config: Path) -> None:
    _replace('[console]\nmode = "sim"', '[console]\nmode = "real"')(config)
    (config.parent / "certs" / "known_hosts").unlink(missing_ok=True)


def _signing_key(config: Path) -> Path:
    """The journal key write_runnable_example made for ``config`` (outside the journal's directory)."""
    match = re.search(r'^signing_key = "file:([^"]+)"', config.read_text(), flags=re.M)
    assert match, "the runnable example names its journal key"
    return Path(match[1])


def _no_signing_key(config: Path) -> None:
    config.write_text(re.sub(r"^signing_key = .*\n", "", config.read_text(), flags=re.M))


def _rsa_signing_key(config: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _signing_key(config).write_bytes(pem)


def _readable_signing_key(config: Path) -> None:
    _signing_key(config).chmod(0o644)


def _signing_key_beside_the_journal(config: Path) -> None:
    beside = config.parent / "journal-key.pem"
    beside.write_bytes(_signing_key(config).read_bytes())
    beside.chmod(0o600)
    _replace(f"file:{_signing_key(config)}", f"file:{beside}")(config)


# Each case: the mistake, and the field the report must name.
MISTAKES = [
    (_real_console_without_its_host_keys, "console.known_hosts"),  # the console's host keys missing
    (_real_ldap_without_its_ca, "ldap.ca_file"),  # the real directory's CA file missing
    (_remove("certs/vcenter-ca.pem"), "vcenter.ca_file"),  # a missing CA file
    (_garble("certs/vcenter-ca.pem"), "vcenter.ca_file"),  # a TLS trust file that is no certificate
    (_remove("certs/ca-chain.pem"), "pki.ca_chain"),  # pki.ca_chain missing: found today after the security wizard
    (
        _replace('[pki]\nmode = "manual"', '[pki]\ncommand = ["no-such-ca-program", "sign"]\nmode = "command"'),
        "pki.command",
    ),  # a command CA whose program is not installed
    (_remove("images/Pexip_Infinity_ConfNode.ova"), "ova.conferencing"),  # a missing OVA
    (_replace('ca_file = "certs/vcenter-ca.pem"', 'ca_file = "certs"'), "vcenter.ca_file"),  # a directory for a file
    (_no_signing_key, "journal.signing_key"),  # real mode without the journal's key
    (_rsa_signing_key, "journal.signing_key"),  # not an Ed25519 key
    (_readable_signing_key, "journal.signing_key"),  # readable by others
    (_signing_key_beside_the_journal, "journal.signing_key"),  # whoever writes the journal could re-sign it
]


@pytest.mark.parametrize(("mistake", "field"), MISTAKES)
@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["validate"]])
def test_a_mistake_is_refused_before_anything_is_written(example_secrets, monkeypatch, mistake, field, command):
    """run, run --dry-run and validate exit 2 naming the field, and leave the directory as it was."""
    config = write_runnable_example(example_secrets)
    load_deployment(config)  # without the mistake it would pass every check
    mistake(config)
    monkeypatch.chdir(example_secrets)
    assert f"\n  {field}: " in _refused(example_secrets, config, *command)


def test_a_missing_client_certificate_and_known_hosts_are_named(example_secrets, monkeypatch):
    """The real API's client certificate and the console's known_hosts are checked where those systems are real."""
    write_example_files(example_secrets)
    (example_secrets / "certs" / "orchestrator-admin.pem").unlink()
    (example_secrets / "certs" / "known_hosts").unlink()
    config = example_secrets / "deployment.toml"
    config.write_text(EXAMPLE.read_text())
    monkeypatch.chdir(example_secrets)
    err = _refused(example_secrets, config, "run")
    assert "\n  pexip_api.client_cert: file not found" in err and "\n  console.known_hosts: file not found" in err


def test_the_shipped_example_lists_every_problem_in_one_report(example_secrets, monkeypatch):
    """The example as shipped (no files beside it, real systems not built) is one report of all of them."""
    config = example_secrets / "deployment.toml"
    config.write_text(EXAMPLE.read_text())
    monkeypatch.chdir(example_secrets)
    err = _refused(example_secrets, config, "run")
    fields = [
        "vcenter.ca_file",
        "ova.management",
        "ova.conferencing",
        "pexip_api.ca_file",
        "pexip_api.client_cert",
        "console.known_hosts",
        "ldap.ca_file",
        "pki.ca_chain",
        "journal.signing_key",
    ]
    assert [f for f in fields if f"\n  {f}: " not in err] == []


def test_a_bad_signing_key_is_in_the_same_report_as_the_configurations_problems(example_secrets, monkeypatch):
    """Issue #7: the journal key's problem comes with every other, not in a second round after they are fixed."""
    config = write_runnable_example(example_secrets)
    _readable_signing_key(config)
    _remove("certs/vcenter-ca.pem")(config)
    monkeypatch.chdir(example_secrets)
    err = _refused(example_secrets, config, "run")
    assert "\n  vcenter.ca_file: file not found" in err and "\n  journal.signing_key: the signing key" in err


def test_the_shipped_example_without_secrets_also_writes_nothing(tmp_path, monkeypatch):
    """With no secret set either, the example is refused with the secrets and the files in the same report."""
    for name in ("VCENTER_PASSWORD", "LDAP_BIND_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "orchestrator.toml"
    config.write_text(EXAMPLE.read_text())
    monkeypatch.chdir(tmp_path)
    err = _refused(tmp_path, config, "run", "--dry-run")
    assert "\n  vcenter.password: secret cannot be read" in err and "\n  pki.ca_chain: file not found" in err


def test_an_expired_trust_anchor_is_refused(example_secrets, monkeypatch):
    """A CA certificate that is not valid now cannot verify anything: refused at load, naming the file's field."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    config = write_runnable_example(example_secrets)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Old CA")])
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(past)
        .not_valid_after(past + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (example_secrets / "certs" / "ca-chain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    monkeypatch.chdir(example_secrets)
    assert "\n  pki.ca_chain: certificate 'CN=Old CA' is not valid now" in _refused(example_secrets, config, "run")


def test_validate_reports_the_same_problems_as_run_in_one_pass(example_secrets, monkeypatch):
    """`validate` on the shipped example lists exactly the problems `run` refuses with (#12 item 4)."""
    config = example_secrets / "deployment.toml"
    config.write_text(EXAMPLE.read_text())
    monkeypatch.chdir(example_secrets)
    run = {line for line in _refused(example_secrets, config, "run").splitlines() if line.startswith("  ")}
    validate = {line for line in _refused(example_secrets, config, "validate").splitlines() if line.startswith("  ")}
    assert run and validate == run


def test_validate_checks_that_every_real_system_is_reachable(example_secrets, monkeypatch):
    """Unless --offline, validate connects to each real system's URL (a closed port is named by its field), then asks
    it what run's preflight asks: a listener that is no vCenter passes the TCP check and fails the next one."""
    import socket
    import threading

    config = write_runnable_example(example_secrets)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:  # accept and close at once: reachable, but not a vCenter
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    _replace("https://vcenter.example.com/sdk", f"https://127.0.0.1:{port}/sdk")(config)
    monkeypatch.chdir(example_secrets)
    before = _tree(example_secrets)
    err = _refused(example_secrets, config, "validate")
    assert "\n  vcenter: " in err and "cannot connect" not in err, err
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the thread; close alone would not stop listening
    listener.close()
    err = _refused(example_secrets, config, "validate")
    assert f"\n  vcenter.url: cannot connect to 127.0.0.1:{port}" in err
    offline = CliRunner().invoke(cli, ["-c", str(config), "validate", "--offline"], catch_exceptions=False)
    assert offline.exit_code == 0, offline.output
    assert _tree(example_secrets) == before
