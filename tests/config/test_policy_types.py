"""config.policy: the typed sections, their schema, the retry backoff, and no untyped reads left."""

from __future__ import annotations

import ast
import dataclasses
import random
import tomllib
import typing
from pathlib import Path

import pytest

from config._policy import POLICY_PATH, SCHEMA, SECTIONS
from config.load import load_policy
from config.model import Policy as ModelPolicy
from config.policy import (
    GlobalSettingsPolicy,
    InstallationWizardPolicy,
    LocationPolicy,
    Policy,
    RetryPolicy,
    SecurityWizardPolicy,
)

ROOT = Path(__file__).resolve().parents[2]
SECTION_NAMES = [f.name for f in dataclasses.fields(Policy)]


@pytest.mark.parametrize("section", SECTION_NAMES)
def test_every_section_is_frozen_and_slotted(section: str) -> None:
    """A loaded section has no __dict__ and refuses assignment."""
    value = getattr(load_policy(), section)
    assert not hasattr(value, "__dict__"), f"{section}: not slotted"
    first = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, getattr(value, first))


def test_the_policy_itself_is_frozen_and_slotted() -> None:
    """Policy holds its sections in slots and cannot be given another one."""
    policy = load_policy()
    assert not hasattr(policy, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.vlan = policy.vlan  # type: ignore[misc]


def test_model_reexports_the_same_policy() -> None:
    """config.model.Policy is config.policy.Policy, so old imports keep working."""
    assert ModelPolicy is Policy


@pytest.mark.parametrize("section", SECTION_NAMES)
def test_loader_returns_typed_sections(section: str) -> None:
    """Each section is its dataclass, every value of its declared type, the file's lists as tuples."""
    value = getattr(load_policy(), section)
    assert type(value) is SECTIONS[section]
    hints = typing.get_type_hints(type(value))
    for f in dataclasses.fields(value):
        got, hint = getattr(value, f.name), hints[f.name]
        if typing.get_origin(hint) is tuple:
            assert type(got) is tuple and all(type(x) is typing.get_args(hint)[0] for x in got), f"{section}.{f.name}"
        elif typing.get_origin(hint) is typing.Literal:
            assert got in typing.get_args(hint), f"{section}.{f.name}"
        else:
            assert type(got) is hint, f"{section}.{f.name}: {type(got).__name__}, not {hint.__name__}"


def test_schema_is_the_dataclasses_and_the_file() -> None:
    """SCHEMA names exactly each dataclass's fields, and the packaged file has exactly those keys."""
    data = tomllib.loads(POLICY_PATH.read_text())
    assert list(SCHEMA) == SECTION_NAMES and set(data) == set(SECTION_NAMES)
    for section, cls in SECTIONS.items():
        assert list(SCHEMA[section]) == [f.name for f in dataclasses.fields(cls)], section
        assert set(data[section]) == set(SCHEMA[section]), section


@pytest.mark.parametrize("cls", [InstallationWizardPolicy, SecurityWizardPolicy, GlobalSettingsPolicy, LocationPolicy])
def test_settings_are_the_fields_without_customizable(cls: type) -> None:
    """settings() maps every field but customizable to its value."""
    section = next(getattr(load_policy(), name) for name, c in SECTIONS.items() if c is cls)
    settings = section.settings()
    assert "customizable" not in settings
    assert settings == {f.name: getattr(section, f.name) for f in dataclasses.fields(cls) if f.name != "customizable"}


RETRY = RetryPolicy(
    max_attempts=5,
    initial_backoff_s=0.5,
    max_backoff_s=30.0,
    multiplier=2.0,
    jitter=0.2,
    wait_timeout_s=900.0,
    customizable=(),
)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (1, 0.4, 0.6),  # the first retry: initial_backoff_s +/- 20 %
        (2, 0.8, 1.2),  # doubled
        (4, 3.2, 4.8),  # 0.5 x 2^3
        (7, 24.0, 36.0),  # 0.5 x 2^6 = 32: capped at 30, then jittered
        (40, 24.0, 36.0),  # far past the cap: still the cap
    ],
)
def test_backoff_grows_exponentially_within_the_cap(attempt: int, low: float, high: float) -> None:
    """Every draw lies in the exponential, capped delay's jitter band."""
    rng = random.Random(7)
    draws = [RETRY.backoff(attempt, rng) for _ in range(200)]
    assert all(low <= d <= high for d in draws), (min(draws), max(draws))
    assert max(draws) - min(draws) > (high - low) / 2, "the jitter spreads the delays"


def test_backoff_without_jitter_is_exact() -> None:
    """jitter = 0 gives initial x multiplier^(attempt-1), capped."""
    exact = dataclasses.replace(RETRY, jitter=0.0)
    assert [exact.backoff(n, random.Random(0)) for n in (1, 2, 3, 6, 7)] == [0.5, 1.0, 2.0, 16.0, 30.0]


def test_backoff_is_reproducible_from_the_seed() -> None:
    """The same seed gives the same delays: the engine's seeded runs repeat."""
    assert [RETRY.backoff(n, random.Random(3)) for n in range(1, 6)] == [
        RETRY.backoff(n, random.Random(3)) for n in range(1, 6)
    ]


# --- no untyped policy reads ---------------------------------------------------------------


def _policy_section(node: ast.expr) -> str | None:
    """The section name when ``node`` is ``<x>.policy.<section>`` or ``policy.<section>``."""
    if not (isinstance(node, ast.Attribute) and node.attr in SECTION_NAMES):
        return None
    owner = node.value
    if (isinstance(owner, ast.Attribute) and owner.attr == "policy") or (
        isinstance(owner, ast.Name) and owner.id == "policy"
    ):
        return node.attr
    return None


def _assigned_sections(tree: ast.AST) -> set[str]:
    """The targets given a policy section in ``tree``: ``r`` of ``r = ctx.policy.roles``."""
    pairs: list[tuple[ast.expr, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs += zip(target.elts, node.value.elts, strict=False)
                else:
                    pairs.append((target, node.value))
    return {ast.unparse(target) for target, value in pairs if _policy_section(value) is not None}


def untyped_policy_reads(source: str) -> list[str]:
    """``policy.<section>.get(...)`` and ``policy.<section>[...]`` in ``source``, as "line: text".

    What was given a section counts as the section: a local name within its function
    (``r = ctx.policy.roles`` then ``r["edit"]``), an attribute in the whole module
    (``self._retry = policy.retry`` then ``self._retry.get(...)``).
    """
    tree = ast.parse(source)
    attributes = {a for a in _assigned_sections(tree) if "." in a}
    scopes: list[ast.AST] = [
        tree,
        *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))),
    ]
    found = set()
    for scope in scopes:
        aliases = attributes | ({a for a in _assigned_sections(scope) if "." not in a} if scope is not tree else set())
        for node in ast.walk(scope):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                target = node.func.value
            elif isinstance(node, ast.Subscript):
                target = node.value
            else:
                continue
            if _policy_section(target) is not None or ast.unparse(target) in aliases:
                found.add(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(found)


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('x = ctx.policy.retry.get("max_attempts", 5)', 1),  # .get with a default on a section
        ('x = deployment.policy.vlan["max"]', 1),  # a section indexed like a dict
        ('x = policy.gates.get("security_wizard_approval", True)', 1),  # a bare `policy` name
        (
            'def f(ctx):\n    r = ctx.policy.roles\n    return [*r["edit"], r["auditor_name"]]',
            2,
        ),  # through a name given the section
        ('self._retry = policy.retry\nn = self._retry.get("max_attempts", 5)', 1),  # through an attribute given it
        (
            'def f(d):\n    n, rules = d.network, d.policy.network_services\n    return rules["min_dns_servers"]',
            1,
        ),  # unpacked
        ("x = ctx.policy.retry.max_attempts", 0),  # the typed attribute: fine
        ('x = observed.get("source")', 0),  # a .get on something else: fine
        (
            'def a(ctx):\n    r = ctx.policy.roles\ndef b(rows):\n    return [r["name"] for r in rows]',
            0,
        ),  # another function's `r`
    ],
)
def test_the_checker_finds_untyped_reads(source: str, found: int) -> None:
    """The AST checker below flags dict-style reads of a policy section and nothing else."""
    assert len(untyped_policy_reads(source)) == found


def test_no_code_reads_the_policy_as_a_dict() -> None:
    """No module of orchestrator/, adapters/ or config/ reads a policy section with .get(...) or [...]."""
    offenders = [
        f"{path.relative_to(ROOT)}:{hit}"
        for layer in ("orchestrator", "adapters", "config")
        for path in sorted((ROOT / layer).rglob("*.py"))
        for hit in untyped_policy_reads(path.read_text())
    ]
    assert offenders == []
