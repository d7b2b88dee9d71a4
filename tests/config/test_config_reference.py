"""config/reference.py is the parser's own list of fields, and docs/configuration.md is generated from it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from config import _reader
from config._parse import parse
from config.reference import FIELDS, json_schema, markdown
from orchestrator._init import _sim_data

ROOT = Path(__file__).resolve().parents[2]
_METHODS = ("text", "integer", "number", "flag", "array", "file_path", "secret", "table", "tables", "get")


def _parsed_fields(monkeypatch: pytest.MonkeyPatch, documents: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Every key the parser reads from ``documents``: (section, name) -> (kind, required, default)."""
    seen: dict[tuple[str, str], Any] = {}
    for name in _METHODS:
        original = getattr(_reader.Table, name)

        def recording(self: _reader.Table, key: str, *args: Any, _m: str = name, _o: Any = original, **kw: Any) -> Any:
            kind = f"{_m}:{args[0].__name__}" if _m in ("array", "get") else _m
            section = re.sub(r"\[\d+\]", "[]", self.path)
            seen.setdefault((section, key), (kind, kw.get("required", True), kw.get("default")))
            return _o(self, key, *args, **kw)

        monkeypatch.setattr(_reader.Table, name, recording)
    for data in documents:
        parse(data, ROOT / "config" / "example.toml")
    return seen


def test_the_reference_lists_exactly_what_the_parser_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    example = tomllib.loads((ROOT / "config" / "example.toml").read_text())
    seen = _parsed_fields(monkeypatch, [example, _sim_data(tmp_path), {"policy": {}}])
    table = {(f.section, f.name): (f.kind, f.required, f.default) for f in FIELDS}
    assert set(table) == set(seen), (sorted(set(seen) - set(table)), sorted(set(table) - set(seen)))
    wrong = {k: (table[k], seen[k]) for k in table if table[k] != seen[k]}
    assert not wrong, wrong  # (reference, parser)


def test_docs_configuration_md_is_generated_from_the_reference() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == markdown(), (
        "regenerate: orchestrator config reference --markdown > docs/configuration.md"
    )


def test_the_schema_has_every_field_and_marks_secrets() -> None:
    schema = json_schema()
    assert schema["required"] == [f.name for f in FIELDS if f.section == "" and f.required]
    hosts = schema["properties"]["vcenter"]["properties"]["hosts"]["items"]
    assert "datastore_iops_capacity" in hosts["required"]
    assert schema["properties"]["snmp"]["properties"]["privacy_password"]["pattern"] == "^(env|file):.+"
    assert schema["properties"]["pki"]["properties"]["mode"]["enum"] == ["manual", "command", "sim"]
