"""A saved plan: ``run --dry-run -o PLAN`` writes it, ``run --plan PLAN`` applies exactly it or refuses.

The file is JSON::

    {"format": "orchestrator-plan", "format_version": 1, "orchestrator_version": "0.1.0",
     "created_at": "2026-12-03T09:20:00+00:00", "plan": {...the run --dry-run --json shape...},
     "content_sha256": "<SHA-256 of the canonical JSON of every other key>"}

``plan.bound`` holds what the plan was made from: the configuration and the policy (SHA-256 of
their canonical form as loaded, so a comment changes nothing), every value the plan observed
(and the simulated world's whole state when a system is simulated), and the journal's chain
head (seq and hash). Applying re-plans read-only first and refuses (exit 2, naming each
difference) unless all of them, the orchestrator version and the node/step set are the same;
then the run drives the plan's nodes to the plan's ``--until``, which is exactly the planned steps.
Once the run's session has opened the journal, only its own opening records may follow the plan's
head (``check_opened``): another process that ran between the re-plan and the run is caught too.

``content_sha256`` detects a plan edited or cut after it was written; it is not a signature (whoever
can write the file can recompute it): keep plans where only operators write. No secret is in a
plan: values are scrubbed and secrets appear as their reference (``env:NAME``) only in hashes' input.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.errors import ConfigError
from journal import Journal, kinds
from orchestrator._plan import Plan, sha256_of, steps_of

__all__ = ["FORMAT", "save", "load", "check", "check_opened", "orchestrator_version"]

FORMAT = "orchestrator-plan"
FORMAT_VERSION = 1
_REPLAN = "make a new plan with `orchestrator run --dry-run -o PLAN`, read it, then apply that one"

# What the plan is bound to, and how a difference is said.
_BOUND = (
    ("configuration_sha256", "-c/--config", "the configuration changed since the plan was made"),
    ("policy_sha256", "deployment.policy", "the secure-mode policy changed since the plan was made"),
    ("journal_head", "--journal", "the journal moved on since the plan was made (something ran or was recorded)"),
    ("world_sha256", "simulation.world", "the simulated world changed since the plan was made"),
    (
        "observed_sha256",
        "observed state",
        "what the systems show changed since the plan was made (observed values differ)",
    ),
)


def orchestrator_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pexip-secure-orchestrator")
    except PackageNotFoundError:  # a source tree never installed
        return "unknown"


def save(plan: Plan, path: Path) -> None:
    """Write ``plan`` to ``path`` with its content hash, atomically (a cut write leaves no half plan)."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "orchestrator_version": orchestrator_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": plan.as_json(),
    }
    document["content_sha256"] = sha256_of(document)
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ConfigError([("-o", f"cannot write the plan to {path}: {exc.strerror}; pass a writable path")]) from exc
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict[str, Any]:
    """The saved plan at ``path``, its format and content hash checked.

    Raises:
        ConfigError: not a plan, another format version, or edited since it was written.
    """
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            [("--plan", f"cannot read the plan {path}: {exc}; pass a file `run --dry-run -o` wrote")]
        ) from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigError([("--plan", f"{path} is not a saved plan; pass a file `run --dry-run -o` wrote")])
    if document.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            [
                (
                    "--plan",
                    f"{path} has plan format {document.get('format_version')}, this orchestrator reads "
                    f"{FORMAT_VERSION}; {_REPLAN}",
                )
            ]
        )
    recorded = document.pop("content_sha256", None)
    if recorded != sha256_of(document):
        raise ConfigError(
            [("--plan", f"{path} was changed after it was written (its content_sha256 does not match); {_REPLAN}")]
        )
    return document


def check(document: dict[str, Any], fresh: Plan) -> None:
    """Refuse unless ``fresh`` (planned now) is the saved plan: same version, bindings and steps.

    Raises:
        ConfigError: one problem per difference, each naming what changed.
    """
    saved = document["plan"]
    problems: list[tuple[str, str]] = []
    if document.get("orchestrator_version") != orchestrator_version():
        problems.append(
            (
                "--plan",
                f"the plan was made by orchestrator {document.get('orchestrator_version')}, this is "
                f"{orchestrator_version()}",
            )
        )
    if saved.get("deployment") != fresh.deployment:
        problems.append(
            ("deployment.name", f"the plan is of deployment {saved.get('deployment')!r}, not {fresh.deployment!r}")
        )
    now = fresh.as_json()["bound"]
    for key, field, what in _BOUND:
        before = saved.get("bound", {}).get(key)
        if before != now.get(key):
            detail = ""
            if key == "journal_head":
                detail = f" (seq {(before or {}).get('seq')} then, {now[key].get('seq')} now)"
            problems.append((field, f"{what}{detail}"))
    steps_then, steps_now = steps_of(saved["nodes"]), fresh.steps()
    if steps_then != steps_now:
        changed = sorted(n for n in {*steps_then, *steps_now} if steps_then.get(n) != steps_now.get(n))
        problems.append(("--plan", f"the steps the run would take differ from the plan's for {', '.join(changed)}"))
    if problems:
        raise ConfigError([*problems, ("--plan", f"refused, nothing done: {_REPLAN}")])


# What opening a run's session records before any step (journal.open_journal, _trust.start_record).
_OPENING = frozenset({kinds.DEFINITION_RECORDED, kinds.DEPLOYMENT_BOUND, kinds.RUN_STARTED})


def check_opened(document: dict[str, Any], journal: Journal) -> None:
    """After the run's session opened its journal: nothing but its own opening records came after the plan's head.

    Closes the window between the read-only re-plan and the session (another process ran in between).

    Raises:
        ConfigError: naming the events recorded since the plan (the run then changes nothing).
    """
    bound = document["plan"]["bound"]["journal_head"]["seq"]
    since = document.get("created_at")
    later = [e for e in journal.events(since=since) if e.seq > bound and e.kind not in _OPENING]
    if later:
        first = later[0]
        raise ConfigError(
            [
                (
                    "--journal",
                    f"{len(later)} event(s) were recorded since the plan was made, the first "
                    f"{first.kind} of {first.node or 'the run'} (seq {first.seq})",
                ),
                ("--plan", f"refused, nothing done: {_REPLAN}"),
            ]
        )
