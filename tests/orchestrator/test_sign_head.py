"""Issue #7: `orchestrator journal sign-head`, the operator's acceptance of events no signature covers.

A journal whose head signature is missing (deleted, or from before head signatures) or behind its head (events
appended without the key) is refused by `journal verify` and every acting command (exit 4). `sign-head` needs the
signing key, shows the uncovered events, accepts them only with --yes, and journals who accepted what; `journal
verify` names the acceptance afterwards. An attacker's appended event never becomes acceptable without the key, and
nothing but the head signature's absence or lag is ever accepted.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from orchestrator._trust import generated_key_path
from tests.journal.journal_helpers import append_forged_event
from tests.orchestrator.cli_helpers import event_count, invoke, sim_config, sim_env


@pytest.fixture
def waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A configured simulation run to the security wizard's gate (exit 3): its configuration and journal."""
    sim_env(tmp_path, monkeypatch)
    config = sim_config(tmp_path)
    assert invoke("-c", str(config), "run")[0] == 3
    return config, tmp_path / "orchestrator.journal.sqlite"


def _append(path: Path, kind: str, step: str | None, actor: str, payload: str, *, drop_signature: bool) -> int:
    """An event appended by hand after the head, chain, head record and row fixed, as anyone who reads the spec can."""
    with sqlite3.connect(path) as db:
        if drop_signature:
            db.execute("DELETE FROM meta WHERE name = 'head_signature'")
        node = "pexip-mgr" if kind == "gate_opened" else None
        return append_forged_event(db, kind, step, actor, payload, node=node)


APPROVAL = '{"approved":true,"gate":"security_wizard","reason":""}'


@pytest.mark.parametrize("drop_signature", [True, False], ids=["signature-deleted", "signature-behind"])
def test_an_unsigned_tail_is_shown_accepted_only_with_the_key_and_yes_and_named_by_verify(
    waiting: tuple[Path, Path], drop_signature: bool
) -> None:
    config, path = waiting
    forged = _append(path, "gate_opened", "security_wizard", "alice", APPROVAL, drop_signature=drop_signature)
    before = event_count(path)
    assert invoke("-c", str(config), "resume", "--all")[0] == 4
    # the attacker, without the signing key, cannot accept it
    key = generated_key_path(path)
    hidden = key.with_name("hidden.pem")
    shutil.move(key, hidden)
    code, out, err = invoke("-c", str(config), "journal", "sign-head", "--by", "mallory", "--yes")
    assert code == 2 and "journal sign-head signs with the journal's key" in err, out + err
    assert event_count(path) == before
    shutil.move(hidden, key)
    # the operator sees the events first; without --yes nothing is accepted
    code, out, err = invoke("-c", str(config), "journal", "sign-head", "--by", "bob")
    assert code == 1 and "nothing accepted" in err, out + err
    why = "no head signature" if drop_signature else f"the head signature covers seq {forged - 1} only"
    assert why in out and f"seq {forged:>6}" in out and "gate_opened" in out and "by alice" in out, out
    assert event_count(path) == before
    # accepted: journaled, signed; verify passes and names who accepted which events
    code, out, err = invoke("-c", str(config), "journal", "sign-head", "--by", "bob", "--reason", "CHG-7", "--yes")
    assert code == 0 and f"accepted by bob (journal seq {forged + 1}" in out, out + err
    code, out, err = invoke("-c", str(config), "journal", "verify")
    assert code == 0 and "VERIFIED" in out and "(head signature holds)" in out, out + err
    assert f"note: seq {forged + 1}: bob accepted events {forged}..{forged}" in err and "CHG-7" in err, err
    code, out, _ = invoke("-c", str(config), "journal", "sign-head", "--by", "bob", "--yes")
    assert code == 0 and "nothing to accept" in out, out


def test_a_forged_acceptance_or_a_forged_signature_is_never_accepted(waiting: tuple[Path, Path]) -> None:
    """A `head_accepted` appended by hand proves nothing (no key: the head signature names the old head, or is
    missing); a head signature that does not verify, or an edited old event, is refused by sign-head (exit 4)."""
    config, path = waiting
    payload = json.dumps({"why": "no head signature", "count": 0, "reason": "trust me"})
    _append(path, "head_accepted", None, "mallory", payload, drop_signature=False)
    code, _, err = invoke("-c", str(config), "journal", "verify")
    assert code == 4 and "signs head seq" in err and "mallory accepted" not in err, err
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = json_set(value, '$.seq', 3) WHERE name = 'head_signature'")
    before = event_count(path)
    code, _, err = invoke("-c", str(config), "journal", "sign-head", "--by", "bob", "--yes")
    assert code == 4 and "never accepted" in err and "does not verify" in err, err
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta WHERE name = 'head_signature'")
        db.execute("UPDATE events SET actor = 'mallory' WHERE seq = 5")
    code, _, err = invoke("-c", str(config), "journal", "sign-head", "--by", "bob", "--yes")
    assert code == 4 and "event seq 5: content does not match its hash" in err, err
    assert event_count(path) == before


def test_a_deleted_head_signature_of_a_checkpointed_journal_is_refused_then_accepted(
    waiting: tuple[Path, Path],
) -> None:
    """Point 3: verify and acting agree (exit 4); sign-head accepts it with no unsigned event, and resume goes on."""
    config, path = waiting
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta WHERE name = 'head_signature'")
    code, _, err = invoke("-c", str(config), "journal", "verify")
    assert code == 4 and "head_signature: missing" in err and "nothing proves" not in err, err
    code, _, err = invoke("-c", str(config), "approve", "pexip-mgr", "security_wizard", "--by", "alice")
    assert code == 4 and "head_signature: missing" in err, err
    code, out, err = invoke("-c", str(config), "journal", "sign-head", "--by", "bob", "--yes")
    assert code == 0 and "0 event(s) no signature covers" in out, out + err
    code, _, err = invoke("-c", str(config), "journal", "verify")
    assert code == 0 and "bob accepted no unsigned event" in err, err
    assert invoke("-c", str(config), "approve", "pexip-mgr", "security_wizard", "--by", "alice")[0] == 0
