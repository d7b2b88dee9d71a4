"""``orchestrator audit``: open the deployment's systems read-only, check every control, record the report's hash.

The systems are read through the steps' observe code only; the journal is never asked what was
done. The one write is to the journal: an ``audit_report`` event with the report's SHA-256 (of
the exact bytes written to ``-o FILE`` or printed), so that a report handed to an auditor can
be matched with the signed journal. The journal is verified before that write and signed in a
checkpoint after it (``open_existing_journal``), so ``journal verify`` passes afterwards.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.errors import ConfigError
from config.model import Deployment
from journal import Journal, kinds
from orchestrator._session import SessionSettings, open_existing_journal
from orchestrator._settings import load_deployment
from orchestrator._worlds import deployment_and_world
from orchestrator.audit._check import AuditReport, check
from orchestrator.audit._render import FORMATS, render
from orchestrator.wiring import open_systems

if TYPE_CHECKING:
    from adapters.sim.world import SimWorld

__all__ = ["AuditOutcome", "audit"]


@dataclass(frozen=True)
class AuditOutcome:
    """The report, its rendering, its SHA-256 and the journal event that records it."""

    report: AuditReport
    text: str
    sha256: str
    seq: int
    output: Path | None


@contextmanager
def _world(settings: SessionSettings, journal: Journal) -> Iterator[tuple[Deployment, SimWorld | None]]:
    """The configured deployment and its world; without a configuration, the simulation the journal records."""
    deployment, world = deployment_and_world(load_deployment(settings, required=False), journal.get_meta("simulation"))
    try:
        yield deployment, world
    finally:
        if world is not None:
            world.close()


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically: a killed audit leaves the previous report, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def audit(
    settings: SessionSettings,
    *,
    nodes: Sequence[str] = (),
    fmt: str = "text",
    output: Path | None = None,
) -> AuditOutcome:
    """Check every control of the guide on ``nodes`` (default: all), live; journal the report's SHA-256.

    Args:
        fmt: ``text``, ``json`` or ``html``.
        output: where the report goes (replaced atomically); None: the caller prints ``text``.

    Raises:
        ConfigError: an unknown format or NODE, no journal, an output directory that does not exist.
        IntegrityError: the journal failed its check (nothing was written).

    Example::

        outcome = asyncio.run(audit(SessionSettings(config=Path("site.toml")), fmt="html", output=Path("a.html")))
        sys.exit(0 if outcome.report.passed else 1)
    """
    if fmt not in FORMATS:
        raise ConfigError([("--format", f"{fmt!r} is not a report format; choose one of {list(FORMATS)}")])
    if output is not None and not output.parent.is_dir():
        raise ConfigError([("-o", f"{output.parent} is not a directory; give a file in an existing directory")])
    with open_existing_journal(settings) as journal, _world(settings, journal) as (deployment, world):
        systems = open_systems(deployment, world, journal=journal.path)
        try:
            report = await check(deployment, systems, list(nodes) or None)
        finally:
            await systems.aclose()
        text = render(report.as_json(), fmt)
        data = text.encode()
        sha = hashlib.sha256(data).hexdigest()
        if output is not None:
            _write(output, data)
        payload: dict[str, Any] = {
            "sha256": sha,
            "format": fmt,
            "output": str(output.resolve()) if output is not None else None,
            "deployment": report.deployment,
            "generated_at": report.generated_at,
            "nodes": report.nodes,
            "passed": report.passed,
            "summary": report.summary,
        }
        event = journal.record(node=None, kind=kinds.AUDIT_REPORT, actor=settings.actor, payload=payload)
    return AuditOutcome(report, text, sha, event.seq, output)
