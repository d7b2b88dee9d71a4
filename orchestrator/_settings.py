"""What a command is told and the files it names: the configuration, the journal, and opening the journal.

Part of :mod:`orchestrator._session`, which re-exports every name here: which file is the
journal and which deployment a journal belongs to are decided in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from config.errors import ConfigError, DefinitionChanged, IntegrityError, JournalError
from journal import Journal, kinds

if TYPE_CHECKING:
    # Types only: `status` opens a journal read-only without the configuration's model, the trust
    # (cryptography) or the syslog wiring; each is imported where it is used (start-up, #11).
    from config.model import Deployment
    from orchestrator._trust import Trust

__all__ = [
    "DEFAULT_CONFIG",
    "check_deployment",
    "open_journal_file",
    "DEFAULT_JOURNALS",
    "SessionSettings",
    "SimulationSettings",
    "open_journal",
    "open_existing_journal",
    "open_readonly_journal",
    "register_secrets",
    "load_deployment",
    "journal_path",
    "existing_journal",
    "resolved_journal",
]

DEFAULT_CONFIG = "orchestrator.toml"
DEFAULT_JOURNALS = ("orchestrator.journal.sqlite", "simulation.journal.sqlite")


@dataclass(frozen=True)
class SimulationSettings:
    """What ``simulate`` is told: the size of the deployment, the world's file, latency and faults."""

    nodes: int = 4
    latency: float = 0.0
    faults: str = ""
    world: Path = Path("simulation.world.sqlite")
    journal: Path = Path("simulation.journal.sqlite")
    effects_out: Path | None = None
    fresh: bool = False
    max_concurrency: int | None = None


@dataclass(frozen=True)
class SessionSettings:
    """What a caller knows before anything is opened.

    Args:
        config: the deployment file given by the caller; ``None``: ``$ORCHESTRATOR_CONFIG``,
            else ``./orchestrator.toml``.
        journal: the journal given by the caller; ``None``: ``$ORCHESTRATOR_JOURNAL``, the
            configuration's ``journal.path``, else the first of ``DEFAULT_JOURNALS`` that exists.
        actor: who acts, for the journal.
        allow_version_change: continue a journal written by another lifecycle definition.
        simulation: set for ``simulate``: the deployment and world are the simulation's.
    """

    config: Path | None = None
    journal: Path | None = None
    actor: str = "orchestrator"
    allow_version_change: bool = False
    simulation: SimulationSettings | None = None


# --- which files ---------------------------------------------------------------------------


def _config_path(settings: SessionSettings, required: bool) -> Path | None:
    path = settings.config or os.environ.get("ORCHESTRATOR_CONFIG") or DEFAULT_CONFIG
    if Path(path).is_file():
        return Path(path)
    if required or settings.config:
        raise ConfigError(
            [
                (
                    "-c/--config",
                    f"configuration file {path} not found; pass -c FILE, set ORCHESTRATOR_CONFIG, "
                    "or start from config/example.toml (or run `orchestrator lab up` for a local one)",
                )
            ]
        )
    return None


def load_deployment(
    settings: SessionSettings, *, required: bool = True, check_secrets: bool = True
) -> Deployment | None:
    """The deployment of the configuration file the settings name (``None`` when optional and absent)."""
    from config.load import load_deployment as load

    path = _config_path(settings, required)
    return load(path, check_secrets=check_secrets) if path else None


def journal_path(settings: SessionSettings, deployment: Deployment | None = None) -> Path:
    """The journal this process uses: given, ``$ORCHESTRATOR_JOURNAL``, the config's, or a default."""
    if settings.journal:
        return Path(settings.journal)
    if os.environ.get("ORCHESTRATOR_JOURNAL"):
        return Path(os.environ["ORCHESTRATOR_JOURNAL"])
    if deployment is not None:
        from config._signing import configured_journal

        return configured_journal(deployment)
    for candidate in DEFAULT_JOURNALS:
        if Path(candidate).exists():
            return Path(candidate)
    return Path(DEFAULT_JOURNALS[0])


def resolved_journal(settings: SessionSettings) -> Path:
    """The journal path without the deployment's secrets: the config names the journal, reading it needs none."""
    deployment = None
    if not settings.journal and not os.environ.get("ORCHESTRATOR_JOURNAL"):
        deployment = load_deployment(settings, required=False, check_secrets=False)
    return journal_path(settings, deployment)


def existing_journal(settings: SessionSettings, deployment: Deployment | None = None) -> Path:
    """Like :func:`journal_path`, and it must exist (a command that reads what ran)."""
    path = journal_path(settings, deployment) if deployment is not None else resolved_journal(settings)
    if not path.exists():
        raise ConfigError(
            [("--journal", f"journal {path} does not exist; pass --journal FILE (nothing has run with it yet?)")]
        )
    return path


# --- opening -------------------------------------------------------------------------------


def open_journal_file(path: str | Path, *, readonly: bool = False) -> Journal:
    """Journal.open, with a file that is not a journal (or cannot be opened) as bad input (exit 2)."""
    try:
        return Journal.open(path, readonly=readonly)
    except IntegrityError:
        raise
    except JournalError as exc:
        raise ConfigError([("--journal", f"{exc}; pass --journal with a journal of this orchestrator")]) from exc


def open_readonly_journal(path: str | Path) -> Journal:
    """An existing journal, read-only: nothing is created or written (``status``, ``verify``, ``export``)."""
    return open_journal_file(path, readonly=True)


def check_deployment(journal: Journal, identity: str) -> None:
    recorded = journal.deployment
    if recorded is not None and recorded != identity:
        raise ConfigError(
            [
                (
                    "deployment.name",
                    (
                        f"journal {journal.path} belongs to deployment {recorded!r}, not {identity!r}: refusing to "
                        "use it "
                        "for another deployment; give this deployment its own journal (journal.path or --journal)"
                    ),
                )
            ]
        )


@contextmanager
def open_journal(
    path: str | Path,
    *,
    allow_version_change: bool = False,
    actor: str = "orchestrator",
    deployment: str | None = None,
    trust: Trust | None = None,
    what: str | None = None,
    bind: bool = True,
    before_writes: Callable[[Journal], object] | None = None,
) -> Iterator[Journal]:
    """Open the journal and check it was written by this lifecycle definition.

    Args:
        deployment: the deployment identity: another deployment's journal is refused (exit 2),
            an unbound one is bound to it, or (``bind`` false: ``resume``) refused: nothing to do.
        trust: with ``what``: verify the journal against this key before anything is written
            (exit 4 when it fails); ``what`` says what would be refused ("run", "approve").
        before_writes: called once the journal verified, before anything is written; a run passes the
            one that signs what an earlier run left unsigned by a checkpoint, then holds its opening
            records (:meth:`journal.Journal.hold`) for its first durable commit (issue #11).

    Raises:
        DefinitionChanged: the journal was written by another definition and
            ``allow_version_change`` is not set.
    """
    journal = open_journal_file(path)
    try:
        if deployment is not None:
            check_deployment(journal, deployment)
            if not bind and journal.deployment is None:
                raise ConfigError(
                    [
                        (
                            "NODE",
                            f"nothing to {what or 'do'}: journal {path} holds no run of deployment "
                            f"{deployment!r}; start one with `orchestrator run`",
                        )
                    ]
                )
        if what is not None:
            from orchestrator import _trust

            _trust.verify_before_acting(journal, trust, what=what)
            if trust is not None:
                journal.sign_heads(trust.signer)  # every commit from here on signs the head (journal/_head.py)
        if before_writes is not None:
            before_writes(journal)
        with journal.batch():  # the binding and the definition's record: one durable commit (issue #11)
            if deployment is not None and bind:
                journal.bind_deployment(deployment)
            _record_definition(journal, path, actor=actor, allow_version_change=allow_version_change)
        yield journal
    finally:
        journal.close()


def _record_definition(journal: Journal, path: str | Path, *, actor: str, allow_version_change: bool) -> None:
    """Record the lifecycle definition of a new journal; refuse (or journal) another one's."""
    from machines.lifecycle import definition_hash

    current = definition_hash()
    recorded = journal.get_meta("definition_hash")
    if recorded is None:
        journal.set_meta("definition_hash", current)
        journal.record(node=None, kind=kinds.DEFINITION_RECORDED, actor=actor, payload={"definition_hash": current})
    elif recorded != current:
        if not allow_version_change:
            raise DefinitionChanged(
                f"journal {path} was written by lifecycle definition {recorded[:12]}, this orchestrator has "
                f"{current[:12]}: the states or steps changed. Finish it with the orchestrator version that "
                "started it, or pass --allow-version-change to continue with this one (journaled)"
            )
        journal.record(node=None, kind=kinds.DEFINITION_CHANGED, actor=actor, payload={"from": recorded, "to": current})
        journal.set_meta("definition_hash", current)


def _operator_trust(deployment: Deployment | None, path: Path) -> Trust | None:
    from orchestrator import _trust

    if deployment is not None:
        return _trust.signer_for(deployment, path, create=False)
    return _trust.trusted_key(None, path)


@contextmanager
def open_existing_journal(settings: SessionSettings, *, readonly: bool = False) -> Iterator[Journal]:
    """The journal the settings resolve to, which must exist (``status``, ``approve``, ``cert import``...).

    ``readonly``: nothing is created or written (``status``). Otherwise the journal is verified
    against the operator's key first (exit 4 when it fails), must belong to the configured
    deployment (exit 2), and what the command wrote is signed in a checkpoint afterwards.
    """
    path = existing_journal(settings)
    if readonly:
        with open_readonly_journal(path) as journal:
            yield journal
        return
    deployment = load_deployment(settings, required=False, check_secrets=False)
    trust = _operator_trust(deployment, path)
    with open_journal(
        path,
        allow_version_change=settings.allow_version_change,
        actor=settings.actor,
        deployment=deployment.name if deployment is not None else None,
        trust=trust,
        what="change",
        bind=False,
    ) as journal:
        yield journal
        if trust is not None:
            from orchestrator._trust import Checkpointer
            from orchestrator.wiring import open_syslog

            Checkpointer(journal, trust, open_syslog(deployment) if deployment is not None else None).now()


def register_secrets(deployment: Deployment) -> None:
    """Read every secret once so the redactor knows the values before anything is logged."""
    from config.secrets import REDACTOR

    for secret in deployment.secrets():
        try:
            REDACTOR.register(secret.reveal())
        except (KeyError, OSError):
            pass  # validation reported it already when it mattered
