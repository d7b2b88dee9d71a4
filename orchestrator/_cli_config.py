"""The configuration commands of ``orchestrator.cli``: ``validate``, ``init``, ``config``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from orchestrator._cli_base import EXIT_BAD_INPUT, Options, handle_errors

__all__ = ["config_group", "init", "validate"]


@click.command("validate")
@click.option(
    "--offline",
    is_flag=True,
    help="Skip what needs this host: secrets set, files the real systems open, connections to them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print {config, valid, offline, deployment, nodes, problems}.")
@click.pass_obj
@handle_errors
def validate(options: Options, offline: bool, as_json: bool) -> None:
    """Check the whole configuration in one pass and list every problem; creates and changes nothing."""
    from orchestrator import api

    result = api.validate(options.session(), offline=offline)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, sort_keys=True))
    elif result.ok:
        scope = " (offline: secrets and host files not checked)" if offline else ""
        click.echo(f"{result.config}: valid: deployment {result.deployment}, {result.nodes} nodes{scope}")
    else:
        click.echo(f"{result.config}: {len(result.problems)} problem(s):", err=True)
        for f, m in result.problems:
            click.echo(f"  {f}: {m}" if f else f"  {m}", err=True)
    if not result.ok:
        sys.exit(EXIT_BAD_INPUT)


@click.command("init")
@click.argument("path", required=False, type=click.Path(path_type=Path), default=Path("orchestrator.toml"))
@click.option("--sim", is_flag=True, help="Every system simulated, secrets made in secrets/: `run` works at once.")
@click.option(
    "--lab",
    "lab",
    is_flag=True,
    help="The running lab's deployment file (`orchestrator lab up` first): runs against its simulators.",
)
@click.option(
    "--lab-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".lab"),
    show_default=True,
    help="With --lab: the lab's directory (`lab up --dir`).",
)
@click.option("--force", is_flag=True, help="Replace PATH if it exists (otherwise refused, exit 2).")
@click.option("--json", "as_json", is_flag=True, help="Print {path, sim, lab, secret_files, todo}.")
@handle_errors
def init(path: Path, sim: bool, lab: bool, lab_dir: Path, force: bool, as_json: bool) -> None:
    """Write a starter deployment file (default ./orchestrator.toml) that `validate` accepts."""
    from orchestrator import api

    result = api.init_config(path, sim=sim, lab=lab_dir if lab else None, force=force)
    if as_json:
        out = {
            "path": str(result.path),
            "sim": result.sim,
            "lab": str(result.lab) if result.lab else None,
            "secret_files": [str(p) for p in result.secret_files],
            "todo": list(result.todo),
        }
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    click.echo(f"wrote {result.path}")
    if result.sim or lab:
        click.echo(f"next: orchestrator -c {result.path} run  (stops at the approval gate, exit 3, as a real site)")
        return
    click.echo("fill in, then `orchestrator validate` (secrets not set yet: `validate --offline`):")
    for line in result.todo:
        click.echo(f"  - {line}")


@click.group("config")
def config_group() -> None:
    """The deployment file's reference: every field, and its JSON Schema."""


@config_group.command("reference")
@click.option("--markdown", "as_markdown", is_flag=True, help="The Markdown of docs/configuration.md.")
@click.option(
    "--json", "as_json", is_flag=True, help="A list of {key, type, required, default, allowed, secret, meaning}."
)
def config_reference(as_markdown: bool, as_json: bool) -> None:
    """Every field of the deployment file: type, default, required, allowed values, secret, meaning."""
    from config import reference

    if as_markdown:
        click.echo(reference.markdown(), nl=False)
        return
    if as_json:
        rows = [
            {
                "key": f.key,
                "type": reference.KINDS[f.kind],
                "required": f.required,
                "default": f.default,
                "allowed": list(f.allowed),
                "secret": f.secret,
                "meaning": f.meaning,
            }
            for f in reference.FIELDS
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for f in reference.FIELDS:
        facts = [reference.KINDS[f.kind], "required" if f.required else "optional"]
        if f.default is not None:
            facts.append(f"default {f.default!r}")
        if f.allowed:
            facts.append("one of " + ", ".join(map(str, f.allowed)))
        click.echo(f"{f.key}  ({'; '.join(facts)})\n    {f.meaning}")


@config_group.command("schema")
def config_schema() -> None:
    """The JSON Schema (draft 2020-12) of the deployment file's structure."""
    from config import reference

    click.echo(json.dumps(reference.json_schema(), indent=2))
