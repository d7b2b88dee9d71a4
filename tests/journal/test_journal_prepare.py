"""A transition's preparation for the write transaction: the hand-built texts equal canonical JSON, secrets go."""

from __future__ import annotations

import enum
import json
import secrets
from typing import Any

import pytest

from config.secrets import REDACTED, Redactor, Secret
from journal._chain import canonical_json, content_parts
from journal._prepare import Prepared
from journal._records import Transition


class _Colour(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "update",
    [
        {},  # only the state the event names
        {"step": None, "attempt": 0},  # a milestone's end, as the engine writes it
        {"step": "security_wizard", "attempt": 3},  # a step in progress
        {"gate": "approve_security_wizard", "last_error": None},  # waiting on a gate
        {"last_error": 'quote " backslash \\ and ünïcode \u2603', "failed_from": "installed"},  # text to escape
        {"maintenance": True, "maintenance_reason": "patching"},  # maintenance is stored as 0/1
        {"attempt": True},  # a bool passed as the attempt: canonical JSON says true, as the dict would
        {"last_error": ""},  # "" is stored as NULL
    ],
)
def test_sets_text_is_the_canonical_json_of_what_the_event_sets(update: dict[str, Any]) -> None:
    """sets_text, assembled by hand, is exactly canonical_json of the node columns set, and reads back as sets."""
    p = Prepared(Transition(node="mgr", kind="step_committed", to_state="installed", update=update))
    assert p.sets_text == canonical_json(p.sets)
    assert json.loads(p.sets_text) == p.sets
    assert p.sets["state"] == "installed"


def test_an_unknown_column_is_refused_by_name() -> None:
    """An update of a column the journal owns names it and the updatable ones."""
    with pytest.raises(ValueError, match=r"cannot update \['last_seq'\]; updatable columns are"):
        Prepared(Transition(node="mgr", kind="step_committed", update={"last_seq": 4, "step": None}))


def test_an_update_seen_before_is_cleaned_again_when_a_secret_was_registered_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kept cleaning of an update is not reused once the update's text holds a newly registered secret."""
    # A redactor of this test's own: a value registered with the process-wide one stays for every later
    # test of the worker (it made test_append_stores_what_record_stores... miss its memory margin).
    redactor = Redactor()
    monkeypatch.setattr("journal._prepare.REDACTOR", redactor)
    secret = f"Kept-{secrets.token_hex(8)}"  # unique: the kept cleanings are process-wide
    update = {"last_error": f"login as {secret} refused", "attempt": 2}
    before = Prepared(Transition(node="mgr", kind="step_retry", update=update))
    redactor.register(secret)
    after = Prepared(Transition(node="mgr", kind="step_retry", update=update))
    assert secret in before.sets_text and secret not in after.sets_text + repr(after.values)
    assert after.sets["last_error"] == f"login as {REDACTED} refused" and after.sets_text == canonical_json(after.sets)


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ({"attempt": 1}, {"attempt": 1.0}),  # equal to the int, but not an index
        ({"step": None, "gate": None}, {"step": None, "gate": 0}),  # 0 is not "no gate"
    ],
)
def test_an_update_equal_to_one_seen_before_is_still_refused(first: dict[str, Any], then: dict[str, Any]) -> None:
    """A value that equals a kept update's but is not its type is checked again, and refused as before."""
    Prepared(Transition(node="mgr", kind="step_started", update=first))
    with pytest.raises(TypeError):
        Prepared(Transition(node="mgr", kind="step_started", update=then))


def test_each_event_gets_its_own_sets() -> None:
    """Changing one event's sets leaves the next event of the same update as it should be."""
    update = {"step": "lock_bios", "attempt": 1}
    Prepared(Transition(node="mgr", kind="step_started", update=update)).sets["step"] = "changed"
    again = Prepared(Transition(node="mgr", kind="step_started", update=update))
    assert again.sets == {"step": "lock_bios", "attempt": 1} and again.values == (1, "lock_bios")


@pytest.mark.parametrize(
    "transition",
    [
        Transition(node="mgr", kind="step_started", step="lock_bios", attempt=1, update={"attempt": 1}),  # the first
        Transition(node="mgr", kind="step_started", step="lock_bios", attempt=2, update={"attempt": 1}),  # attempt
        Transition(node="mgr", kind="step_retry", step="lock_bios", attempt=1, update={"attempt": 1}),  # kind
        Transition(node="mgr", kind="step_started", step="reserve", attempt=1, update={"attempt": 1}),  # step
        Transition(node="mgr", kind="step_started", actor="ops", step="lock_bios", attempt=1, update={"attempt": 1}),
        Transition(
            node="mgr", kind="step_started", step="lock_bios", from_state="reserved", attempt=1, update={"attempt": 1}
        ),
        Transition(node="mgr", kind="milestone_started", update={"state": "reserving"}),  # to_state from the update
        Transition(node="mgr", kind="milestone_started", to_state="reserving", update={"state": "reserving"}),
        Transition(node=None, kind="run_started", actor="ops"),  # a run-level event: no update
    ],
)
def test_the_hash_parts_kept_with_an_update_are_those_of_the_events_own_fields(transition: Transition) -> None:
    """An update seen before with other fields around it (kind, actor, step, attempt, from_state) gets the
    content parts of its own fields, and to_state as the event stores it."""
    for kind in ("step_started", "step_retry", "milestone_started"):  # the same update kept with other fields
        Prepared(Transition(node="mgr", kind=kind, step="lock_bios", attempt=1, update={"attempt": 1}))
    p = Prepared(transition)
    assert p.parts == content_parts(p.actor, p.attempt, p.from_state, p.kind, p.step, p.to_state)
    assert p.to_state == (transition.update or {}).get("state", transition.to_state)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"password": "hunter2", "user": "admin"}, {"password": REDACTED, "user": "admin"}),  # a secret key
        ({"ssh_key": "AAAA", "keys": 2, "monkey": "x"}, {"ssh_key": REDACTED, "keys": 2, "monkey": "x"}),  # (^|_)key$
        ({"a": {"token": "t0k", "n": 1.5, "ok": True}}, {"a": {"token": REDACTED, "n": 1.5, "ok": True}}),  # nested
        ({"none": None, "zero": 0}, {"none": None, "zero": 0}),  # null and numbers as they are
        ({"list": ("x", {"secret": "s"})}, {"list": ["x", {"secret": REDACTED}]}),  # a tuple is a list after
        ({3: "three"}, {"3": "three"}),  # a non-str key is a str key after
        ({"colour": _Colour.RED, "Password": _Colour.RED}, {"colour": "red", "Password": REDACTED}),  # a str subclass
        ({"ref": Secret("env:X"), "token": ""}, {"ref": REDACTED, "token": ""}),  # a Secret; an empty value stays
        ({"text": "the value is s3cr3t-pw here"}, {"text": f"the value is {REDACTED} here"}),  # a registered value
    ],
)
def test_scrub_masks_secret_keys_and_values_in_every_json_type(
    payload: dict[Any, Any], expected: dict[str, Any]
) -> None:
    """scrub() keeps every JSON type, masks values under secret keys and registered values, twice the same."""
    redactor = Redactor()
    redactor.register("s3cr3t-pw")
    for _ in range(2):  # the second time from the kept answers
        assert json.loads(canonical_json(redactor.scrub(payload))) == expected


def test_append_stores_what_record_stores_without_decoding_the_payload_back(
    journal: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journal.append: the same stored event, hash chain and head as record() would make, its seq returned,
    and the payload's text never decoded back (record() decodes it for the Event it returns).

    Counted, not weighed: tracemalloc's peak is the same for both once warm (1.72 MB here; the first call of
    either peaks 0.18 MB higher), since the decoded copy is made after the scrubbed one is gone."""
    summary = {f"pexip-conf-{i:05d}": {"ok": i, "steps_changed": ["deploy_ova", "lock_bios"]} for i in range(2000)}
    loads = json.loads
    decoded: dict[str, int] = {"record": 0, "append": 0}
    for name in ("record", "append"):

        def counting(text: Any, *args: Any, _name: str = name, **kwargs: Any) -> Any:
            decoded[_name] += isinstance(text, str) and "pexip-conf-01999" in text
            return loads(text, *args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(json, "loads", counting)
            if name == "record":
                seq = journal.record(node=None, kind="run_recap", actor="test", payload=summary).seq
            else:
                seq = journal.append(node=None, kind="run_recap", actor="test", payload=summary)
        assert [e.payload for e in journal.events() if e.seq == seq] == [summary]
    assert decoded == {"record": 1, "append": 0}, decoded
    assert journal.verify(chain_only=True).status == "CHAIN_ONLY"  # chain, rows and continuity all hold
