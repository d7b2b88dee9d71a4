"""The :class:`Journal`: the one durable record of a run.

Every state change of every node is an event in a hash chain, written in the same
SQLite transaction as the node's row and the chain's head record, so after a crash (kill -9,
power loss) the file holds either all of a commit or none of it.

The write path is plain ``sqlite3`` with statements the module caches prepared; the
head of the chain is cached in memory and re-read only when ``PRAGMA data_version``
says another connection wrote. Reads use keyset pages so no statement stays open
between two writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any

from config.errors import ConfigError, JournalError
from journal import _checkpoints, _head, _latency, kinds
from journal._chain import _js, hash_of_parts, head_record
from journal._leases import LeaseMethods
from journal._prepare import INSERT_EVENT, UPSERT_META, Prepared, update_sql
from journal._records import Event, Transition, VerifyReport
from journal._schema import connect
from journal._signing import PublicKey, Signer, load_public_key
from journal._time import utc_now

__all__ = ["Journal"]

_RESERVED_META = frozenset({"head", "deployment", "schema_version", _head.HEAD_SIGNATURE})
_PAGE = 1000
_KNOWN_NODES = "SELECT name FROM nodes WHERE name IN ({})"


def _unknown_node(p: Prepared) -> JournalError:
    return JournalError(
        f"commit: node {p.node!r} (event {p.kind!r}) is not in the journal; "
        "register it with ensure_nodes() first. Nothing was written"
    )


class Journal(LeaseMethods):
    """The SQLite journal of a run: events in a hash chain, node rows, leases, signed checkpoints.

    Example::

        with Journal.open("run.sqlite") as j:
            j.ensure_nodes([("mgr", "management", "deployed")])
            j.record(node="mgr", kind="step_committed", step="reserve_resources",
                     from_state="deployed", to_state="reserved")
            assert j.verify().ok

    A Journal may be shared by threads (calls are serialised) and by processes (SQLite
    locking; each write is one short ``BEGIN IMMEDIATE`` transaction).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool = False):
        """Use :meth:`open`."""
        self._conn = conn
        self._path = path
        self._readonly = readonly
        self._lock = threading.RLock()
        self._head: tuple[int, str] | None = None  # (seq, hash) of the last event, when known
        self._data_version = -1
        self._absent, self._absent_version = set(), -1
        self._watches = {}  # latest_kind's watches, by kinds
        self._batching = False  # inside batch() or hold(): writes are savepoints of its one transaction
        self._holding = False  # inside hold(): the next durable commit (or release) ends the transaction
        self._nested = 0  # batches inside a batch or a hold
        self._head_signer: Signer | None = None  # signs the head at every append (sign_heads)
        self._bound: str | None = None  # the deployment identity (None: unbound), once read
        self._bound_read = False
        self._newest_checkpoint: int | None = None  # the seq of the newest checkpoint, once read
        self._kept_snapshot = _checkpoints.KeptSnapshot()  # the last checkpoint's snapshot this process stored

    # --- opening and closing ---------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False, deployment: str | None = None) -> Journal:
        """Open the journal at ``path``, creating it (mode 0600) when new.

        Args:
            path: the SQLite file, or ``":memory:"`` for a private in-memory journal.
            readonly: open an existing journal for reading and :meth:`verify` only:
                nothing is created or written (a missing file is an error).
            deployment: the deployment identity this caller works for; see
                :meth:`bind_deployment` (a read-only open only checks it).

        Raises:
            JournalError: the file cannot be opened, or is not a journal (a database
                without the journal's tables is refused, never converted).
            ConfigError: the journal belongs to another deployment.
        """
        text = os.fspath(path)
        journal = cls(connect(text, readonly=readonly), Path(text), readonly=readonly)
        if deployment is not None:
            try:
                journal.bind_deployment(deployment)
            except BaseException:
                journal.close()
                raise
        return journal

    @property
    def path(self) -> Path:
        """The journal's SQLite file."""
        return self._path

    @property
    def readonly(self) -> bool:
        """Whether this journal was opened read-only."""
        return self._readonly

    @property
    def checkpoints_path(self) -> Path | None:
        """``<journal>.checkpoints``: the signed checkpoints, one JSON line each (None in memory)."""
        return None if str(self._path) == ":memory:" else Path(f"{self._path}.checkpoints")

    def close(self) -> None:
        """Close the connection (what a :meth:`hold` kept is committed first); this loses nothing."""
        with self._lock:
            try:
                self.release()
            finally:
                for watch in self._watches.values():
                    watch.close()
                self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self._path)!r})"

    def _append(self, conn: sqlite3.Connection, prepared: list[Prepared]) -> list[tuple[Any, ...]]:
        """Append events, update node rows and the head, inside the caller's transaction."""
        seq, prev = self._head_for_write(conn)
        at = utc_now()
        rows = []
        at_text = _js(at)  # the same for every event of the transaction
        for p in prepared:
            seq += 1
            digest = hash_of_parts(prev, p.parts, at_text, p.key, p.node, p.payload_text, seq, p.sets_text)
            rows.append(
                (
                    seq,
                    at,
                    p.node,
                    p.kind,
                    p.step,
                    p.attempt,
                    p.key,
                    p.from_state,
                    p.to_state,
                    p.actor,
                    p.payload_text,
                    prev,
                    digest,
                    p.sets_text,
                )
            )
            prev = digest
        if len(rows) == 1:
            conn.execute(INSERT_EVENT, rows[0])  # the single transition's commit: no executemany set-up
        else:
            conn.executemany(INSERT_EVENT, rows)
        self._appended((p.node, p.kind) for p in prepared)  # before COMMIT: a rollback only costs a query
        if len(prepared) == 1:
            p = prepared[0]
            if p.sql is not None and conn.execute(p.sql, (*p.values, at, seq, p.node)).rowcount != 1:
                raise _unknown_node(p)
        else:
            self._update_nodes(conn, prepared, rows, at)
        if self._head_signer is None:
            conn.execute(UPSERT_META, ("head", head_record(seq, prev)))
            return rows
        # The head signed in the same transaction: no crash window (journal/_head.py). What it names
        # besides the head is read once and kept while no other connection writes (_head_for_write).
        if not self._bound_read:
            bound = conn.execute("SELECT value FROM meta WHERE name = 'deployment'").fetchone()
            self._bound, self._bound_read = (bound[0] if bound else None), True
        if self._newest_checkpoint is None:
            self._newest_checkpoint = _head.newest_checkpoint(conn)
        signature = _head.signed_head(self._head_signer, self._bound, seq, prev, self._newest_checkpoint)
        conn.execute(_head.UPSERT_HEAD_AND_SIGNATURE, (head_record(seq, prev), signature))
        return rows

    @staticmethod
    def _update_nodes(conn: sqlite3.Connection, prepared: list[Prepared], rows: list[tuple[Any, ...]], at: str) -> None:
        """The node rows of several events: ONE update per node, not per event (issue #11).

        A step's ``step_committed``, the next ``step_started`` and a milestone's start set the same row:
        their columns merged in order (a later event's value wins) and ``last_seq`` of the node's last
        event are what the updates one by one left behind. Rows of the same columns share one statement.
        """
        merged: dict[str, tuple[Prepared, dict[str, Any] | None, int]] = {}
        for p, row in zip(prepared, rows, strict=True):
            if p.sql is None:
                continue
            node = p.node
            assert node is not None  # a row update has a node (Prepared)
            earlier = merged.get(node)
            if earlier is None:
                merged[node] = (p, None, row[0])
            else:
                union = dict(earlier[0].sets) if earlier[1] is None else earlier[1]
                union.update(p.sets)
                merged[node] = (earlier[0], union, row[0])
        statements: dict[str, list[tuple[Any, ...]]] = {}
        for node, (p, sets, seq) in merged.items():
            if sets is None:
                statements.setdefault(p.sql or "", []).append((*p.values, at, seq, node))
            else:
                columns = tuple(sorted(sets))
                statements.setdefault(update_sql(columns), []).append((*(sets[c] for c in columns), at, seq, node))
        for sql, params in statements.items():
            if conn.executemany(sql, params).rowcount != len(params):
                names = [param[-1] for param in params]
                known = {r[0] for r in conn.execute(_KNOWN_NODES.format(", ".join("?" * len(names))), names)}
                raise _unknown_node(next(p for p in prepared if p.node in set(names) - known))

    def sign_heads(self, signer: Signer | None) -> None:
        """From now on, every transaction that appends events also signs the new head with ``signer``.

        Call it once the journal verified against ``signer``'s public key: a writer without it
        leaves the head signature behind the head, which verify reports (exit 4 for acting).
        """
        self._head_signer = signer

    def _commit_prepared(self, prepared: list[Prepared], what: str) -> list[tuple[Any, ...]]:
        """Write ``prepared`` in one transaction; the events' rows (seq first, hash at 12)."""
        self._require_writable()
        with self._lock:
            # The hot path: the same as _write(), without a generator's overhead.
            conn = self._conn
            try:
                self._begin(conn)
                try:
                    rows = self._append(conn, prepared)
                    self._end(conn, ok=True)
                except BaseException:
                    self._head = None
                    self._end(conn, ok=False)
                    raise
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self._path}: {what} failed ({exc}); nothing was written") from exc
            # Only now, after COMMIT returned, is the new head real.
            self._head = (rows[-1][0], rows[-1][12])
            if self._holding:
                self._ride_ends(p.kind for p in prepared)  # a hold's records ride in this commit
        return rows

    # --- writing -------------------------------------------------------------------------

    def commit(self, transitions: Sequence[Transition]) -> list[Event]:
        """Make ``transitions`` durable, all in ONE transaction: all or nothing.

        Appends one event per transition to the chain, applies each transition's node-row
        update (and ``updated_at``, ``last_seq``), recording the columns set in the event,
        and moves the head record.

        Returns:
            The events written, in order.

        Raises:
            JournalError: a node is unknown or SQLite failed; nothing was written.
            IntegrityError: the chain's head does not match its head record (tampered); nothing written.
            ValueError, TypeError: a malformed Transition (before anything is written).
        """
        prepared = [Prepared(t) for t in transitions]
        if not prepared:
            return []
        rows = self._commit_timed(prepared)
        return [
            Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], p.payload, r[11], r[12], p.sets)
            for r, p in zip(rows, prepared, strict=True)
        ]

    def commit_seqs(self, transitions: Sequence[Transition]) -> list[int]:
        """:meth:`commit` that returns only the events' sequence numbers, in order.

        The same transaction, hashes, signature and checks; no payload decoded back and no
        :class:`Event` built, for a caller that reads neither (the engine's group committer, #11).
        """
        prepared = [Prepared(t, decode=False) for t in transitions]
        return [row[0] for row in self._commit_timed(prepared)] if prepared else []

    def _commit_timed(self, prepared: list[Prepared]) -> list[tuple[Any, ...]]:
        # Timed by hand, not by COMMIT_LATENCY.timed(): a context manager is 2 us of a 100 us commit (#7).
        # A commit that raises wrote nothing and is not counted.
        start = perf_counter()
        rows = self._commit_prepared(prepared, "commit")
        _latency.COMMIT_LATENCY.observe(perf_counter() - start)
        return rows

    def record(self, **fields: Any) -> Event:
        """Commit one transition: ``record(node=..., kind=..., ...)`` takes Transition's fields."""
        return self.commit([Transition(**fields)])[0]

    def append(self, **fields: Any) -> int:
        """Commit one transition as :meth:`record` does, and return only its sequence number.

        The payload is stored, hashed and signed exactly as by :meth:`record`, but not decoded back
        into an :class:`Event` no one reads: for a large payload (a 1000-node run's recap, ~1 MB
        decoded) that copy came at the run's memory peak (issue #11).
        """
        return int(self._commit_timed([Prepared(Transition(**fields), decode=False)])[0][0])

    def ensure_nodes(self, nodes: Iterable[tuple[str, str, str]]) -> list[str]:
        """Register the nodes not yet in the journal, in one transaction.

        Args:
            nodes: ``(name, role, initial_state)`` triples; known names are left as they are.

        Returns:
            The names added, each journaled as a ``node_registered`` event.
        """
        wanted: dict[str, tuple[str, str]] = {}
        for item in nodes:
            name, role, state = item
            for field, value in (("name", name), ("role", role), ("initial_state", state)):
                if not isinstance(value, str) or not value:
                    raise ValueError(f"ensure_nodes: {field} of {item!r} must be a non-empty string")
            wanted.setdefault(name, (role, state))
        if not wanted:
            return []
        prepared = {
            name: Prepared(Transition(node=name, kind=kinds.NODE_REGISTERED, to_state=state, payload={"role": role}))
            for name, (role, state) in wanted.items()
        }
        self._require_writable()
        with self._lock:
            with self._write("ensure_nodes") as conn:
                known = {row[0] for row in conn.execute("SELECT name FROM nodes")}
                added = [name for name in wanted if name not in known]
                if not added:
                    return []
                conn.executemany(
                    "INSERT INTO nodes (name, role, state, attempt, maintenance) VALUES (?, ?, ?, 0, 0)",
                    [(name, *wanted[name]) for name in added],
                )
                rows = self._append(conn, [prepared[name] for name in added])
            self._head = (rows[-1][0], rows[-1][12])
        return added

    def set_meta(self, name: str, value: str) -> None:
        """Set a meta value. ``head``, ``deployment`` and ``schema_version`` are the journal's own."""
        if name in _RESERVED_META:
            raise ValueError(f"set_meta: {name!r} is kept by the journal itself and cannot be set by hand")
        if not isinstance(value, str):
            raise TypeError(f"set_meta: value of {name!r} must be a str (got {type(value).__name__})")
        with self._write("set_meta") as conn:
            conn.execute(UPSERT_META, (name, value))

    # --- deployment, checkpoints, integrity and export --------------------------------------

    @property
    def deployment(self) -> str | None:
        """The deployment identity the journal belongs to (``None``: not bound yet)."""
        return self.get_meta("deployment")

    def bind_deployment(self, identity: str) -> None:
        """Bind the journal to ``identity``, or check it is bound to it.

        The first bind records the identity (meta ``deployment`` and a journaled
        ``deployment_bound`` event); a read-only journal is only checked.

        Raises:
            ConfigError: the journal belongs to another deployment (nothing is changed).
        """
        if not isinstance(identity, str) or not identity.strip():
            raise ValueError(f"bind_deployment: the identity must be a non-empty string (got {identity!r})")
        with self._lock:
            recorded = self.deployment
            if recorded is None and not self._readonly:
                try:
                    with self._write("bind_deployment") as conn:
                        row = conn.execute("SELECT value FROM meta WHERE name = 'deployment'").fetchone()
                        if row is None:
                            conn.execute(UPSERT_META, ("deployment", identity))
                            self._bound, self._bound_read = identity, True  # what the head signature names now
                            bound = Transition(node=None, kind=kinds.DEPLOYMENT_BOUND, payload={"deployment": identity})
                            self._append(conn, [Prepared(bound)])
                        recorded = row[0] if row else identity
                finally:  # also when it rolled back: read both again at the next append
                    self._head = None
                    self._bound_read = False
        if recorded is not None and recorded != identity:
            raise ConfigError(
                f"journal {self._path} belongs to deployment {recorded!r}, not {identity!r}: "
                "refusing to use it for another deployment; give this deployment its own journal",
                field="deployment",
            )

    def checkpoint(self, signer: Signer, *, file_check: bool = True, continued: bool = False) -> dict[str, Any]:
        """Sign the chain's head and append the checkpoint to :attr:`checkpoints_path`.

        The chain since the previous checkpoint is verified first (against the signer's
        public key), so a checkpoint never signs rows edited outside the journal. The
        checkpoint is recorded in the database and, once committed, appended (fsynced) to the file.
        Inside a :meth:`hold` it rides in the hold's transaction, which it commits (a run's recap and
        the leases' release with its closing checkpoint: one durable commit, issue #11); when it cannot
        be signed, what the hold kept is committed alone.
        ``file_check`` false skips SQLite's whole-file ``quick_check`` (a run's periodic checkpoints).
        ``continued`` checks only what this connection appended since its previous checkpoint when no
        other connection wrote since (journal/_continued.py; a run's periodic and closing checkpoints).

        Returns:
            The checkpoint record (seq, head, at, deployment, nodes, key_id, signature),
            the JSON line written: send it wherever a copy must be kept (syslog).

        Raises:
            IntegrityError: the journal does not verify; nothing is signed.
        """
        self._require_writable()
        with self._lock:
            if self._batching and (not self._holding or self._nested):
                raise RuntimeError("checkpoint() inside batch(): it signs only what is durable; end the batch first")
            self._newest_checkpoint = None  # read again at the next append (also when this fails)
            options: dict[str, Any] = {"file_check": file_check, "kept": self._kept_snapshot, "continued": continued}
            if not self._holding:
                return _checkpoints.make(
                    self._conn, self._path, signer, self.checkpoints_path, self._head_signer is not None, **options
                )
            # In the hold's transaction: the checkpoint and what the hold kept are durable together or not at all.
            try:
                signed = _checkpoints.sign(self._conn, self._path, signer, self._head_signer is not None, **options)
            finally:
                self.release()
            return _checkpoints.committed(signed, self._kept_snapshot, self.checkpoints_path)

    def checkpoints_missing_from_file(self) -> list[dict[str, Any]]:
        """The database's checkpoints newer than the newest line of :attr:`checkpoints_path`, oldest first.

        What a process stopped between a checkpoint's commit and its line left (:meth:`checkpoint`);
        not proof by themselves: read them only from a journal that verified.
        """
        file = self.checkpoints_path
        if file is None:
            return []
        with self._lock:
            return _checkpoints.missing_lines(self._conn, file)

    def append_checkpoint_lines(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append checkpoint records to :attr:`checkpoints_path` (fsynced), one canonical JSON line each."""
        file = self.checkpoints_path
        if file is not None:
            for record in records:
                _checkpoints.append(file, record)

    def checkpoints(self) -> list[dict[str, Any]]:
        """The checkpoints recorded in the database, oldest first (not proof by themselves)."""
        with self._lock:
            return _checkpoints.recorded(self._conn)

    def verify(
        self,
        public_key: PublicKey | Signer | bytes | str | os.PathLike[str] | None = None,
        checkpoints: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | None = None,
        *,
        chain_only: bool = False,
        incremental: bool = False,
    ) -> VerifyReport:
        """Check the chain, node rows, continuity, checkpoints and the database file.

        Args:
            public_key: the trusted Ed25519 public key (PEM bytes/text, a PEM file, a key);
                never taken from the journal. Without it the status is ``UNVERIFIED``.
            checkpoints: an independently kept checkpoint list (a JSON-lines file, e.g.
                the syslog server's copy, or records); each must match the chain.
            chain_only: check the chain and rows only, status ``CHAIN_ONLY`` (says so).
            incremental: start from the newest signed checkpoint (fast; needs the key).

        Returns:
            A :class:`VerifyReport`; act only on ``status == VerifyStatus.VERIFIED``.
        """
        key = load_public_key(public_key) if public_key is not None else None
        kept = _checkpoints.load_kept(checkpoints) if checkpoints is not None else None
        with self._lock:
            return _checkpoints.verify(
                self._conn, self._path, key, kept, chain_only=chain_only, incremental=incremental
            ).report
