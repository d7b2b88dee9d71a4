"""A lab's records for tests that write or serve the lab's deployment file without starting vcsim (a uniquely named
module: pytest collects test files by base name)."""

from __future__ import annotations

from pathlib import Path

from adapters.sim._pki import make_root
from orchestrator.lab import VCSIM_USER, Vcsim

__all__ = ["fake_vcsim"]


def fake_vcsim(lab: Path) -> Vcsim:
    """A Vcsim record as start_vcsim returns it, with no process behind it (the deployment file only names its URL
    and CA). The CA's certificate is written (load_deployment reads the trust file, issue #7) and its key beside it
    (the lab CA signs, pki.command, and issues client certificates)."""
    ca_file = lab / "pki" / "vcsim-ca.pem"
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    key_pem, cert_pem = make_root("Lab test CA")
    ca_file.write_text(cert_pem)
    ca_file.with_suffix(".key").write_text(key_pem)
    return Vcsim(
        url="https://127.0.0.1:4443/sdk",
        user=VCSIM_USER,
        password="lab-password",
        ca_file=ca_file,
        cert_file=lab / "pki" / "vcsim.pem",
        pid=0,
        port=4443,
        workdir=lab / "vcsim",
        keys_file=lab / "vcsim" / "keys.jsonl",
        requests_file=lab / "vcsim" / "requests.jsonl",
    )
