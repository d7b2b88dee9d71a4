"""What the redactor's ``scrub`` copies: only what held a secret, never editing what it was given."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from config.secrets import REDACTED, Redactor, Secret


def _redactor() -> Redactor:
    redactor = Redactor()
    redactor.register("hunter2-c0ffee")
    return redactor


def test_a_payload_without_a_secret_is_returned_itself_not_copied() -> None:
    """Nothing to replace: the same dict, with the same nested lists and dicts (no copy of a large payload)."""
    payload = {"nodes": {"n1": {"ok": 3, "steps_changed": ["deploy_ova", "lock_bios"], "duration_s": 0.5}}, "x": None}
    scrubbed = _redactor().scrub(payload)
    assert scrubbed is payload
    assert scrubbed["nodes"]["n1"]["steps_changed"] is payload["nodes"]["n1"]["steps_changed"]


@pytest.mark.parametrize(
    "payload",
    [
        {"a": {"b": ["ok", "the value hunter2-c0ffee here"]}},  # a registered value deep in a list
        {"a": [{"admin_password": "anything-at-all"}]},  # a secret key inside a list's dict
        {"a": {"note": Secret("env:X")}, "b": [1, 2]},  # a Secret object
        {"first": "kept", "key": "masked-by-name", "last": ["kept"]},  # the changed value between others
    ],
)
def test_a_payload_with_a_secret_is_copied_and_the_original_left_as_it_was(payload: dict[str, Any]) -> None:
    """The scrubbed copy masks the secret; the dict given, and everything in it, is not edited."""
    before = copy.deepcopy(payload)
    scrubbed = _redactor().scrub(payload)
    assert payload == before
    assert scrubbed is not payload
    assert REDACTED in repr(scrubbed) and "hunter2-c0ffee" not in repr(scrubbed)
    assert list(scrubbed) == list(payload)  # the same keys in the same order


def test_unchanged_parts_of_a_copied_payload_and_tuples_keep_their_old_forms() -> None:
    """A tuple still becomes a list, a str subclass a str, and an equal answer is the text given."""

    class Name(str):
        pass

    redactor = _redactor()
    scrubbed = redactor.scrub({"pair": ("a", "hunter2-c0ffee"), "kept": ("x",), "name": Name("node-1")})
    assert scrubbed == {"pair": ["a", REDACTED], "kept": ["x"], "name": "node-1"}
    assert type(scrubbed["name"]) is str
    text = "".join(["deploy", "_ova"])  # not the object an earlier scrub's kept answer was made for
    redactor.scrub_text("deploy_ova")
    assert redactor.scrub(text) is text
