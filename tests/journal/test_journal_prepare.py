"""A transition's preparation for the write transaction: the hand-built texts equal canonical JSON, secrets go."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from config.secrets import REDACTED, Redactor, Secret
from journal._chain import canonical_json
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
