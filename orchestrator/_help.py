"""The command line's help beyond one line: each command's examples and exit codes (its epilog).

Kept in one table so that every command, whichever module defines it, documents the same way;
``apply`` attaches them to the click commands and a test checks that none is missing.
"""

from __future__ import annotations

import click

__all__ = ["EXIT_CODES", "EXAMPLES", "SHORT", "apply", "epilog"]

# Every exit code of the command line (a contract users' scripts rely on).
EXIT_CODES = {
    0: "done (every node reached its target; a read-only command succeeded)",
    1: (
        "a step failed, the run was interrupted, another process holds a node, the lab failed to start, "
        "(audit) a control failed, or a node is blocked on a Management Node that failed or was not driven, "
        "(journal sign-head) nothing accepted without --yes"
    ),
    2: "bad input: the message names the option or field and the fix",
    3: "waiting on a gate (or blocked on a node that waits on one): open it (approve, cert import), then resume",
    4: "the journal or an export failed its integrity check",
    70: "simulate only: a simulated crash injected by --faults exit=STEP (resume to continue)",
}

_DRIVE = (0, 1, 2, 3, 4)
_READ = (0, 1, 2, 4)

# command path -> (example lines, exit codes that command returns)
EXAMPLES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "": (
        ("orchestrator -c site.toml run", "orchestrator status --json", "orchestrator simulate --fresh --nodes 4"),
        (*_DRIVE, 70),
    ),
    "run": (
        (
            "orchestrator -c site.toml run",
            "orchestrator run pexip-mgmt --until hardened",
            "orchestrator run --dry-run -o plan.json",
            "orchestrator run --plan plan.json",
        ),
        _DRIVE,
    ),
    "simulate": (
        (
            "orchestrator simulate --fresh --nodes 4 --latency 0.2",
            "orchestrator simulate --faults 'transient=0.1,exit=security_wizard,seed=7'",
            "orchestrator simulate --json --effects-out effects.json",
        ),
        (*_DRIVE, 70),
    ),
    "resume": (("orchestrator resume --all", "orchestrator resume pexip-conf-1 --from-step lock_bios"), _DRIVE),
    "status": (
        (
            "orchestrator status",
            "orchestrator status pexip-mgmt --json",
            "orchestrator --journal j.sqlite status",
            "orchestrator status --refresh --json",
        ),
        _READ,
    ),
    "approve": (("orchestrator approve pexip-mgmt security_wizard --by alice --reason CHG-42",), _READ),
    "cert": (("orchestrator cert import pexip-mgmt signed.pem --by alice",), _READ),
    "cert import": (("orchestrator cert import pexip-mgmt signed.pem --by alice",), _READ),
    "cert renew": (("orchestrator cert renew pexip-mgmt --by alice",), _DRIVE),
    "maintenance": (("orchestrator maintenance pexip-conf-1 on --by alice --reason 'host swap'",), _READ),
    "journal": (("orchestrator journal export -o audit.jsonl", "orchestrator journal verify audit.jsonl"), _READ),
    "journal export": (
        ("orchestrator journal export -o audit.jsonl", "orchestrator journal export --format csv"),
        _READ,
    ),
    "journal verify": (
        (
            "orchestrator journal verify --public-key auditor.pem",
            "orchestrator journal verify audit.jsonl --public-key auditor.pem --checkpoints syslog-copy.log",
            "orchestrator journal verify --chain-only",
        ),
        _READ,
    ),
    "journal sign-head": (
        (
            "orchestrator journal sign-head --by alice",
            'orchestrator journal sign-head --by alice --reason "CHG-42: tail checked" --yes',
        ),
        (0, 1, 2, 4),
    ),
    "journal public-key": (("orchestrator journal public-key > auditor.pem",), (0, 1, 2)),
    "serve": (("orchestrator serve", "orchestrator serve --listen 127.0.0.1:9480"), (0, 1, 2)),
    "daemon": (
        ("orchestrator -c site.toml daemon", "orchestrator daemon --listen 127.0.0.1:9480"),
        (0, 1, 2, 4),
    ),
    "audit": (
        (
            "orchestrator -c site.toml audit",
            "orchestrator audit --format html -o audit.html",
            "orchestrator audit pexip-mgmt --format json",
        ),
        _READ,
    ),
    "lab": (("orchestrator lab up", "orchestrator lab status --json", "orchestrator lab down --reset"), (0, 1, 2)),
    "lab up": (("orchestrator lab up", "orchestrator lab up --fresh --json"), (0, 1, 2)),
    "lab down": (("orchestrator lab down", "orchestrator lab down --reset --json"), (0, 1, 2)),
    "lab status": (("orchestrator lab status", "orchestrator lab status --json"), (0, 1, 2)),
    "validate": (("orchestrator -c site.toml validate", "orchestrator validate --offline --json"), (0, 2)),
    "config": (("orchestrator config reference", "orchestrator config schema > orchestrator.schema.json"), (0,)),
    "config reference": (("orchestrator config reference", "orchestrator config reference --markdown"), (0,)),
    "config schema": (("orchestrator config schema > orchestrator.schema.json",), (0,)),
    "init": (
        (
            "orchestrator init --sim",
            "orchestrator init site.toml",
            "orchestrator lab up && orchestrator init --lab lab.toml",
            "orchestrator init --force --sim",
        ),
        (0, 2),
    ),
}

# One-line summaries for the command lists (never cut with "...").
SHORT = {
    "journal": "The audit record: export, verify, sign-head, public key.",
    "journal sign-head": "Accept, after checking them, events no signature covers (needs the key).",
    "journal public-key": "The public key an auditor verifies the journal with (PEM).",
    "cert import": "The CA's signed certificate for NODE's pending CSR, checked first.",
    "cert renew": "A renewal CSR from NODE's installed certificate (same key); the CA's answer is checked first.",
    "simulate": "A whole deployment against the simulated world.",
    "resume": "Continue NODE (or --all) from its last committed state.",
    "status": "Where each node stands, and why.",
    "approve": "Open an approval gate of NODE, then resume.",
    "maintenance": "Stop or restart automation for NODE.",
    "serve": "The HTTP API, /metrics and a status page, until Ctrl-C.",
    "daemon": "Drive every node, watch for new ones, serve the HTTP API, until SIGTERM.",
    "audit": "One result per control of the guide and node, read live.",
    "lab": "The local lab of simulators on 127.0.0.1.",
    "lab up": "Build and start the simulators; write their configuration.",
    "lab status": "Where the simulators listen, and their configuration.",
    "journal verify": "Check the journal's or an export's hash chain and seal.",
    "journal export": "Export the journal with a seal.",
    "validate": "Check the whole configuration in one pass; change nothing.",
    "config": "The deployment file's reference and JSON Schema.",
    "config reference": "Every field of the deployment file.",
    "config schema": "The JSON Schema of the deployment file.",
    "init": "Write a starter deployment file (--sim: runnable at once).",
}


def epilog(path: str) -> str:
    """The Examples and Exit codes sections of command ``path`` (``""``: the top level)."""
    examples, codes = EXAMPLES[path]
    # \b keeps click from re-wrapping the paragraph that follows it.
    lines = ["\b", "Examples:", *(f"  $ {e}" for e in examples), "", "\b", "Exit codes:"]
    lines += [f"  {c:<3} {EXIT_CODES[c]}" for c in codes]
    return "\n".join(lines)


def apply(group: click.Group, prefix: str = "") -> None:
    """Attach the epilog and short summary of every command under ``group`` that has one in the tables."""
    if prefix in EXAMPLES and not group.epilog:
        group.epilog = epilog(prefix)
    for name, cmd in group.commands.items():
        path = f"{prefix} {name}".strip()
        if path in SHORT and not cmd.short_help:
            cmd.short_help = SHORT[path]
        if isinstance(cmd, click.Group):
            apply(cmd, path)
        elif path in EXAMPLES and not cmd.epilog:
            cmd.epilog = epilog(path)
