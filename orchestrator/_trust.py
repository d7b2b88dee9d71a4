"""Trust in the journal: its signing key, verify before acting, checkpoints and their witnesses.

The journal's checkpoints are signed with an Ed25519 key that is a secret reference
(``[journal] signing_key``), kept away from the journal's directory; a simulation without
one generates its own in a private directory beside the journal's (see :func:`key_dir`).
A command that acts verifies the whole journal first and refuses to act on one that fails
(exit 4): in full, not only from the last signed checkpoint, because the engine decides on old
events too (an approval of a gate is an event; one edited in place before the checkpoint would
otherwise open the irreversible wizard's gate). It also refuses a journal whose last events no
signature proves: every commit signs the head (journal/_head.py), so a journal without a head
signature (deleted, or written before head signatures) is refused even when a signed checkpoint
covers its last event, until an operator accepts it (``journal sign-head``, orchestrator/_head_accept.py);
one holding nothing but its opening records is the exception. Every checkpoint is appended to
``<journal>.checkpoints`` and sent to the deployment's remote syslog servers; a server that
is down is a warning, never a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio  # imported where used: status and --help start without it (#11)

    from adapters.syslog import SyslogSender

from config._signing import signing_key_problems
from config.errors import ConfigError, IntegrityError, JournalError
from config.model import Deployment
from config.secrets import Secret
from journal import Journal, Signer, VerifyReport, VerifyStatus, generate_signing_key, kinds
from journal._chain import canonical_json

__all__ = [
    "key_dir",
    "create_private",
    "generated_key_path",
    "generate_key",
    "Trust",
    "signer_for",
    "checked_signer",
    "trusted_key",
    "verify_before_acting",
    "Checkpointer",
    "start_record",
    "login_name",
    "checkpoint_every",
]


def _log() -> Any:
    """structlog on first use: `status` reads the journal without loading the logging stack (start-up)."""
    import structlog

    return structlog.get_logger("orchestrator.journal")


# What a journal holds before anything has run: adopted unsigned only when nothing else is there
# (a crash between these writes and the first checkpoint); any other unsigned history is refused.
_OPENING_KINDS = frozenset(
    {
        kinds.DEFINITION_RECORDED,
        kinds.DEFINITION_CHANGED,
        kinds.DEPLOYMENT_BOUND,
        kinds.NODE_REGISTERED,
        kinds.RUN_STARTED,
    }
)


def key_dir(journal: Path) -> Path:
    """The private directory of a generated key: ``<parent>/.<journal's dir name>.journal-keys``.

    Not ``<journal>.keys/`` nor any directory inside the journal's own: whoever can write the
    journal's directory can rename or replace anything in it, a subdirectory included, and with
    the key re-sign a rewritten history. A sibling of that directory is out of their reach.
    """
    folder = journal.resolve().parent
    return folder.parent / f".{folder.name.lstrip('.') or 'root'}.journal-keys"


def create_private(path: Path) -> Path:
    """Create ``path`` empty, mode 0600, when it does not exist (a world's SQLite file: SQLite keeps the mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return path


def generated_key_path(journal: Path) -> Path:
    """Where the generated key of ``journal`` is kept (one key per journal file)."""
    return key_dir(journal) / f"{journal.name}.signing-key.pem"


def generate_key(journal: Path) -> Path:
    """The generated key of ``journal``, made (and where it is printed, once) when missing."""
    path = generated_key_path(journal)
    if not path.exists():
        generate_signing_key(path.parent, path.name)
        path.parent.chmod(0o700)
        print(
            f"journal signing key generated: {path} (private, kept apart from the journal's directory; "
            "`orchestrator journal public-key` prints its public key)",
            file=sys.stderr,
        )
    return path


@dataclass(frozen=True)
class Trust:
    """The signer of a journal's checkpoints and where its key came from (for messages)."""

    signer: Signer
    source: str


def _load_signer(secret: Secret) -> Signer:
    try:
        return Signer.from_pem(secret.reveal())
    except (OSError, KeyError) as exc:
        raise ConfigError([("journal.signing_key", f"secret {secret.ref} cannot be read ({exc})")]) from exc
    except JournalError as exc:
        raise ConfigError(
            [
                (
                    "journal.signing_key",
                    f"{exc}; give an Ed25519 PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`)",
                )
            ]
        ) from exc


def signer_for(deployment: Deployment, journal: Path, *, create: bool = True) -> Trust | None:
    """The signer of ``journal``: the configured key (checked in real mode), else a simulation's own.

    Raises:
        ConfigError: a real deployment without ``journal.signing_key``, or a key stored in the
            journal's directory or readable by group/others (nothing is created).
    """
    problems = signing_key_problems(deployment, journal, content=False)
    if problems:
        raise ConfigError(problems)
    secret = deployment.journal.signing_key
    if secret is not None:
        return Trust(_load_signer(secret), f"journal.signing_key ({secret.ref})")
    path = generate_key(journal) if create else generated_key_path(journal)
    if not path.is_file():
        return None
    return Trust(Signer.from_pem(path.read_bytes()), f"the simulation's key {path}")


def checked_signer(deployment: Deployment, journal: Path, *, create: bool = True) -> Trust | None:
    """Before anything is created: the journal's signing key, its problems in one report.

    ``create`` false: a simulation's key not made yet is None (made later, once every check passed).
    """
    trust = signer_for(deployment, journal, create=create)
    assert trust is not None or not create  # create: a simulation's key is made when missing
    return trust


def trusted_key(deployment: Deployment | None, journal: Path) -> Trust | None:
    """The operator's key for ``journal`` without creating anything: configured, else a simulation's."""
    if deployment is not None and deployment.journal.signing_key is not None:
        return Trust(
            _load_signer(deployment.journal.signing_key), f"journal.signing_key ({deployment.journal.signing_key.ref})"
        )
    path = generated_key_path(journal)
    if path.is_file():
        return Trust(Signer.from_pem(path.read_bytes()), f"the simulation's key {path}")
    return None


def _never_checkpointed(journal: Journal, report: VerifyReport) -> bool:
    """A journal that only holds its opening records and was never signed (a crash before the first checkpoint)."""
    if not report.ok or report.status != VerifyStatus.UNVERIFIED or journal.checkpoints():
        return False
    kept = journal.checkpoints_path
    if kept is not None and kept.is_file() and kept.stat().st_size:
        return False
    return all(event.kind in _OPENING_KINDS for event in journal.events())


def verify_before_acting(journal: Journal, trust: Trust | None, *, what: str) -> VerifyReport | None:
    """Check ``journal`` (all of it: chain, rows, signatures, kept copy) before ``what`` changes anything.

    Raises:
        IntegrityError: it fails, or no trusted key can verify it (exit 4); nothing was written.
    """
    if journal.get_meta("head") is None:
        return None  # a new journal: nothing to verify yet
    kept = journal.checkpoints_path if journal.checkpoints_path and journal.checkpoints_path.is_file() else None
    # Not incremental: that proves the rows and the tail, but the engine also reads older events (approvals,
    # the CSR a certificate must match, a step's changes across attempts), which only the full chain proves.
    report = journal.verify(public_key=trust.signer if trust else None, checkpoints=kept)
    if trust is not None and _never_checkpointed(journal, report):
        return report
    if report.verified and report.head_signed is not False and (report.head_signed or report.head_seq == 0):
        return report
    why = "\n  ".join(report.problems) or report.status
    if report.verified:  # no head signature (deleted, or from before head signatures): as `journal verify` says
        why = (
            f"meta head_signature: missing although the journal has {report.head_seq} events (deleted, or written "
            "before head signatures)"
        )
        if report.head_seq > report.signed_seq:
            why += (
                f": events {report.signed_seq + 1}..{report.head_seq} come after the last signed checkpoint (seq "
                f"{report.signed_seq}) and no head signature covers them: anyone able to write the file could have "
                "appended them"
            )
        why += (
            ". Read them with `orchestrator journal export`; after checking them, `orchestrator journal sign-head "
            "--by WHO --yes` accepts them (journaled); this orchestrator will not act on them before"
        )
    if trust is None:
        why = "no trusted public key: set journal.signing_key (the key that signed it)\n  " + why
    raise IntegrityError(
        f"journal {journal.path}: refusing to {what}: it is {report.status}:\n  {why}\n"
        "Nothing was changed. Run `orchestrator journal verify --public-key PEM` to see what happened"
    )


@dataclass
class Checkpointer:
    """Signs the journal's head every ``every`` transitions and at the end, and sends each to syslog."""

    journal: Journal
    trust: Trust
    syslog: SyslogSender | None = None
    every: int = 200
    group: str = ""  # journal.group: the checkpoint list is readable by it (0640)
    _count: int = 0
    _witnessed: bool = False  # witness_missing() ran (at the first checkpoint)
    _sends: list[asyncio.Task[None]] = field(default_factory=list)

    def committed(self, *_: Any) -> None:
        """An engine observer: one more committed transition."""
        self._count += 1
        if self._count >= self.every:
            # The file's pages: checked by the closing checkpoint and by verify. Continued: from this process's
            # previous checkpoint, only what it appended since, while no other process wrote (issue #11).
            self.now(file_check=False, continued=True)

    def now(self, *, file_check: bool = True, continued: bool = False) -> dict[str, Any] | None:
        """Sign the head when it has unsigned events; the record is sent to syslog (in the background).

        Its first call also appends (and sends) what the checkpoint list lacks (:meth:`witness_missing`).
        """
        self._count = 0
        if not self._witnessed:
            self.witness_missing()
        head = self.journal.get_meta("head")
        # Only the newest checkpoint's seq is read (issue #11: every checkpoint row was, 161 times in a 1000-node run).
        if head is None or json.loads(head).get("seq") == self.journal.newest_checkpoint_seq():
            return None  # nothing new since the last checkpoint
        record = self.journal.checkpoint(self.trust.signer, file_check=file_check, continued=continued)
        self._witness([record])
        return record

    def witness_missing(self) -> list[dict[str, Any]]:
        """Append to the checkpoint list, and send to syslog, the database's checkpoints newer than its newest line.

        A checkpoint's line is appended once its transaction committed, never before (a line naming a
        head the database lost would refuse every later run), so a process stopped in between leaves
        the database one (or more) ahead of the file and the syslog servers: the same signed records,
        read from a journal that verified (called after :func:`verify_before_acting`), are witnessed
        now, and a warning says so. Nothing is accepted that was not already proven: a file line the
        database lacks is still a failure of verify (a cut or rewritten history).
        """
        self._witnessed = True
        missing = self.journal.checkpoints_missing_from_file()
        if missing:
            self.journal.append_checkpoint_lines(missing)
            _log().warning(
                "checkpoints in the journal but not in its checkpoint list (the process that made them stopped "
                "before writing their lines) appended and sent to syslog now",
                journal=str(self.journal.path),
                seqs=[record["seq"] for record in missing],
            )
            self._witness(missing)
        return missing

    def _witness(self, records: list[dict[str, Any]]) -> None:
        """The checkpoint list readable by the group; ``records`` sent to syslog (in the background)."""
        if self.group and self.journal.checkpoints_path is not None:
            from orchestrator._access import share_with_group

            share_with_group([self.journal.checkpoints_path], self.group)
        if self.syslog is None:
            return
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._send(*records))
            return
        # A send that finished well is forgotten (a 1000-node run made ~160 of them, each task
        # holding its record to the end, #11); one that failed is kept for aclose to raise.
        self._sends = [t for t in self._sends if not t.done() or t.cancelled() or t.exception()]
        self._sends.append(loop.create_task(self._send(*records)))

    async def _send(self, *records: dict[str, Any]) -> None:
        assert self.syslog is not None
        for record in records:  # in order: a server keeps them as the file does
            for where, error in await self.syslog.send("checkpoint", canonical_json(record)):
                _log().warning(
                    "checkpoint not witnessed by a syslog server", server=where, seq=record["seq"], error=str(error)
                )

    def close_run(self) -> None:
        """Right after a run's recap: the closing checkpoint, in the recap's transaction (the journal's hold,
        :meth:`journal.Journal.checkpoint`; issue #11), which ends with it. A journal that no longer verifies
        is logged, as by :meth:`aclose`, and what the hold kept is committed alone."""
        try:
            self.now(continued=True)  # from this process's previous checkpoint, with the file's pages checked
        except (IntegrityError, JournalError) as exc:
            _log().error("no checkpoint at the end of the run", error=str(exc))
        finally:
            self.journal.release()  # nothing new to sign: the hold ends here all the same

    async def aclose(self) -> None:
        """The end of a run: a last checkpoint (when the journal still verifies), then every send finished."""
        try:
            self.now()
        except (IntegrityError, JournalError) as exc:
            _log().error("no checkpoint at the end of the run", error=str(exc))
        if self._sends:
            import asyncio

            await asyncio.gather(*self._sends)
        if self.syslog is not None:
            await self.syslog.aclose()


def open_run(journal: Journal, trust: Trust, deployment: Deployment, syslog: SyslogSender | None) -> Checkpointer:
    """A run's checkpointer, made once its journal verified and before the run writes; then its records held.

    What an earlier run left unsigned by a checkpoint (it was cut short) is signed and witnessed first;
    this run's own records are head-signed at each commit, and its opening records are held for its
    first durable commit (:meth:`journal.Journal.hold`, issue #11). A journal not bound yet is not
    signed here: a checkpoint names the deployment, which this run's records bind.
    """
    checkpointer = Checkpointer(
        journal, trust, syslog, every=checkpoint_every(deployment), group=deployment.journal.group
    )
    if journal.deployment is not None:
        checkpointer.now()
    from orchestrator._history import watch_maintenance  # a run's module: status starts without it (#11)

    watch_maintenance(journal)
    journal.hold()
    return checkpointer


def login_name() -> str:
    """Who runs this process, for the start record when no ``--by`` was given."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def checkpoint_every(deployment: Deployment) -> int:
    """The policy's ``journal.checkpoint_every`` (200 when the policy has no such section)."""
    section = getattr(deployment.policy, "journal", None)
    return int(section.checkpoint_every) if section is not None else 200


def _sha256(path: str | Path | None) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def _plain(value: object) -> object:
    """A policy value as JSON: scalars as they are, sequences as lists, anything else as text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple, frozenset, set)):
        return [_plain(v) for v in value]
    return str(value)


def start_record(journal: Journal, deployment: Deployment, *, command: str, user: str, argv: Sequence[str]) -> None:
    """Journal one ``run_started``: the policy and configuration applied, the command line, who, the version.

    The configuration's and the policy's SHA-256 are those of the bytes the loader read
    (``source_sha256``, ``policy_sha256``); every deviation of the policy from the guide is listed
    with the guide's value, the value used and the guide's words, so an auditor sees a weakened
    or strengthened setting in the run that applied it.
    """
    from config._policy import POLICY_PATH
    from orchestrator import __version__

    policy_path = deployment.policy_path or None
    payload: dict[str, Any] = {
        "command": command,
        "argv": list(argv),
        "user": user,
        "version": __version__,
        "config": deployment.source or None,
        "config_sha256": deployment.source_sha256 or _sha256(deployment.source),
        "policy_path": policy_path,
        "policy_sha256": deployment.policy_sha256 or _sha256(policy_path),
        "packaged_policy_sha256": _sha256(POLICY_PATH),
        "policy_deviations": [
            {"field": name, "guide": _plain(guide), "used": _plain(used), "guide_words": words}
            for name, guide, used, words in deployment.policy_deviations
        ],
    }
    journal.record(node=None, kind=kinds.RUN_STARTED, actor=user, payload=payload)
