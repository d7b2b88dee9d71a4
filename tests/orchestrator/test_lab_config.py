"""The lab's deployment file: built as data, written with tomli_w, read back unchanged."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from config.errors import ConfigError
from config.load import load_deployment
from config.model import Deployment
from orchestrator.lab import write_lab_config
from tests.orchestrator.lab_records import fake_vcsim

BEFORE = Path(__file__).parent / "data" / "lab_config_before.toml"  # what the f-string writer wrote, paths as @LAB@


def _anonymous(deployment: Deployment) -> Deployment:
    return dataclasses.replace(deployment, source="", source_sha256="")


def test_the_lab_file_holds_what_the_f_string_writer_wrote(tmp_path: Path) -> None:
    """The written file parses to the same TOML data, and loads as the same deployment, as before the change."""
    lab = tmp_path / "lab"
    path = write_lab_config(lab, fake_vcsim(lab))
    before = tmp_path / "before.toml"
    before.write_text(BEFORE.read_text().replace("@LAB@", str(lab)))
    written = tomllib.loads(path.read_text())
    assert written["journal"].pop("signing_key").startswith("file:")  # issue #7: the lab's journal key
    assert written == tomllib.loads(before.read_text())
    loaded = load_deployment(path)
    unsigned = dataclasses.replace(loaded, journal=dataclasses.replace(loaded.journal, signing_key=None))
    assert _anonymous(unsigned) == _anonymous(load_deployment(before, check_secrets=False))


def test_the_lab_file_maps_every_role_to_a_group(tmp_path: Path) -> None:
    """Each of a Manager's roles (Read-write, Read-only) and Auditor gets its own lab group; no Administrator."""
    lab = tmp_path / "lab"
    mappings = load_deployment(write_lab_config(lab, fake_vcsim(lab))).ldap.role_mappings
    assert [(m.name, tuple(m.roles)) for m in mappings] == [
        ("Lab Read-write", ("Read-write",)),
        ("Lab Read-only", ("Read-only",)),
        ("Lab Auditor", ("Auditor",)),
    ]


def test_the_lab_makes_a_usable_bootstrap_key_once(tmp_path: Path) -> None:
    """The lab's pexip_api.bootstrap_key is a 0600 file of 32 random bytes, kept when the lab is written again."""
    import os
    import stat

    from adapters.bootstrap_store import decode_key

    lab = tmp_path / "lab"
    key = load_deployment(write_lab_config(lab, fake_vcsim(lab))).pexip_api.bootstrap_key
    assert key is not None and len(decode_key(key.reveal())) == 32
    path = lab / "secrets" / "pexip-bootstrap-key"
    assert key.ref == f"file:{path}" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = path.read_text()
    write_lab_config(lab, fake_vcsim(lab))
    assert path.read_text() == first


ODD = [
    '"',  # a quote ends an f-string's TOML string early
    "\\",  # a backslash starts a TOML escape
    "\n",  # a newline is not allowed in a basic string
    ' "quoted" \\n\\ back\nslash',  # all of them, and an escape look-alike
]


@pytest.mark.parametrize("odd", ODD)
def test_odd_characters_in_lab_paths_round_trip(tmp_path: Path, odd: str) -> None:
    """A lab path with quotes, backslashes or newlines reads back exactly, in TOML and as a deployment."""
    lab = tmp_path / f"lab{odd}dir"
    vc = fake_vcsim(lab)
    path = write_lab_config(lab, vc)
    data: dict[str, Any] = tomllib.loads(path.read_text())
    assert data["vcenter"]["ca_file"] == str(vc.ca_file)
    assert data["vcenter"]["password"] == f"file:{lab / 'secrets' / 'vcenter-password'}"
    assert data["journal"]["path"] == str(lab / "journal.sqlite")
    deployment = load_deployment(path)  # every file: secret readable at the path as written
    assert deployment.vcenter.ca_file == str(vc.ca_file)
    assert deployment.ova.management == str(lab / "images" / "pexip-mgmt-test.ova")
    assert deployment.simulation.world == str(lab / "world.sqlite")
    assert deployment.journal.path == str(lab / "journal.sqlite")


@pytest.mark.parametrize("odd", ODD)
def test_odd_characters_in_the_deployment_name_reach_the_name_rule_unchanged(tmp_path: Path, odd: str) -> None:
    """A name with quotes, backslashes or newlines reads back as given; the only problem found is the name rule's."""
    lab = tmp_path / "lab"
    name = f"lab{odd}name"
    path = write_lab_config(lab, fake_vcsim(lab), name=name)
    assert tomllib.loads(path.read_text())["deployment"]["name"] == name
    with pytest.raises(ConfigError) as refused:
        load_deployment(path)
    assert [field for field, _ in refused.value.problems] == ["deployment.name"]
    assert repr(name) in refused.value.problems[0][1]
