"""Secrets never reach the journal: not the file, not a hash input, not an export."""

from __future__ import annotations

import io
import secrets
from pathlib import Path

from config.secrets import REDACTED, REDACTOR
from journal import Journal, Transition


def test_registered_secret_never_lands_anywhere(journal: Journal, journal_path: Path) -> None:
    """A value registered with REDACTOR is scrubbed from payload, columns and node rows."""
    secret = f"S3cret-{secrets.token_hex(8)}"  # unique: REDACTOR is process-wide
    REDACTOR.register(secret)
    journal.commit(
        [
            Transition(
                node="mgr",
                kind="step_failed",
                step=f"login as {secret}",
                key=f"k-{secret}",
                actor=f"op {secret}",
                payload={
                    "detail": f"ssh said: bad password {secret}",
                    "nested": [{"v": secret}],
                    "admin_password": "anything",
                },
                update={
                    "last_error": f"auth failed for {secret}",
                    "gate": secret,
                    "maintenance_reason": f"why {secret}",
                },
            ),
            Transition(node=None, kind="run_note", payload={"note": secret}),
        ]
    )
    journal.close()

    stored = b"".join(p.read_bytes() for p in journal_path.parent.iterdir() if p.is_file())
    assert secret.encode() not in stored
    assert b"anything" not in stored  # a secret-looking key is masked whatever it holds

    with Journal.open(journal_path) as j:
        node = j.node("mgr")
        assert node is not None and node.gate == REDACTED
        assert node.last_error == f"auth failed for {REDACTED}"
        event = j.last_event("mgr")
        assert event is not None
        assert event.payload["detail"].endswith(REDACTED) and event.payload["admin_password"] == REDACTED
        assert event.step == f"login as {REDACTED}" and event.actor == f"op {REDACTED}"
        everything = [str(e) for e in j.events()] + [str(n) for n in j.nodes()]
        assert not any(secret in text for text in everything)
        for fmt in ("jsonl", "csv"):
            out = io.StringIO()
            j.export(out, fmt=fmt)
            assert secret not in out.getvalue()
        assert j.verify().ok
