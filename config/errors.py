"""The exception tree of the orchestrator.

It lives in ``config/`` because every layer may import plain data from here,
and an exception tree is plain data: ``machines/``, ``adapters/`` and
``journal/`` raise these without importing each other.

    OrchestratorError
    ├── ConfigError            bad input: names the field, the value and the fix (exit 2)
    ├── TransitionError        an event that the lifecycle does not allow from this state
    ├── AdapterError           an outside system refused or failed (carries ``retryable``)
    │   ├── Unreachable        could not connect (retryable)
    │   ├── Timeout            no answer in time (retryable)
    │   │   └── NotYet         the world is getting there by itself (a node syncing): wait, up to a deadline
    │   ├── Rejected           the system said no: bad value, conflict (not retryable)
    │   └── Unknowable         cannot be observed before an earlier step has run (dry run)
    ├── JournalError           the journal cannot be read or written
    │   ├── IntegrityError     the hash chain or seal does not hold (exit 4)
    │   ├── DefinitionChanged  the journal was written by another lifecycle definition
    │   └── ResourceLocked     another live process holds a node's lease
    └── SimulatedExit          fault injection: the process must die here (simulation only)

Programming misuse raises ``RuntimeError``/``TypeError`` subclasses and is never retried.
"""

from __future__ import annotations

__all__ = [
    "OrchestratorError",
    "ConfigError",
    "TransitionError",
    "AdapterError",
    "Unreachable",
    "Timeout",
    "NotYet",
    "Rejected",
    "Unknowable",
    "JournalError",
    "IntegrityError",
    "DefinitionChanged",
    "ResourceLocked",
    "SimulatedExit",
]


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""


class ConfigError(OrchestratorError):
    """Bad input. ``problems`` lists every ``(field, message)`` found, not just the first."""

    def __init__(self, problems: list[tuple[str, str]] | str, field: str | None = None):
        if isinstance(problems, str):
            problems = [(field or "", problems)]
        self.problems = problems
        lines = [f"{f}: {m}" if f else m for f, m in problems]
        super().__init__("\n".join(lines))


class TransitionError(OrchestratorError):
    """An event the lifecycle does not allow from the node's current state."""


class AdapterError(OrchestratorError):
    """An outside system failed. ``retryable`` says whether trying again may help."""

    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None, system: str = ""):
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.system = system


class Unreachable(AdapterError):
    retryable = True


class Timeout(AdapterError):
    retryable = True


class NotYet(Timeout):
    """Not there yet, and nothing to do but wait: retried until ``retry.wait_timeout_s``,
    not counted against ``retry.max_attempts``."""


class Rejected(AdapterError):
    retryable = False


class Unknowable(AdapterError):
    """Raised by ``observe`` in a dry run when the answer depends on an earlier step."""

    retryable = False


class JournalError(OrchestratorError):
    pass


class IntegrityError(JournalError):
    pass


class DefinitionChanged(JournalError):
    pass


class ResourceLocked(JournalError):
    def __init__(self, node: str, owner: str, pid: int, since: str):
        self.node, self.owner, self.pid, self.since = node, owner, pid, since
        super().__init__(
            f"node {node} is locked by pid {pid} ({owner}) since {since}; "
            "wait for that process to finish or stop it, then run again"
        )


class SimulatedExit(OrchestratorError):
    """Fault injection asked the process to die at this point (``--faults exit=...``)."""
