"""The redactor with more secrets than one of its patterns holds (a password per Conferencing Node)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from config.secrets import REDACTED, Redactor

SECRET = st.text(alphabet="abcdefXYZ0123-_", min_size=4, max_size=12)


@settings(max_examples=60, deadline=None)
@given(secrets=st.lists(SECRET, min_size=1, max_size=150, unique=True), picks=st.lists(st.integers(0, 149), max_size=8))
def test_no_registered_secret_survives_a_scrub(secrets: list[str], picks: list[int]) -> None:
    redactor = Redactor()
    for value in secrets:
        redactor.register(value)
    chosen = [secrets[i % len(secrets)] for i in picks]
    text = " | ".join(["start", *chosen, "end"])
    scrubbed = redactor.scrub_text(text)
    for value in chosen:  # each chosen secret is separated by " | ": it must be gone whole
        assert value not in scrubbed.replace(REDACTED, " "), (value, scrubbed)


def test_a_secret_containing_another_from_an_earlier_pattern_is_masked_whole() -> None:
    redactor = Redactor()
    redactor.register("abcd")
    for i in range(Redactor.CHUNK):  # "abcd" is now in a frozen pattern, the next ones in another
        redactor.register(f"filler-{i:04d}")
    redactor.register("xxabcdyy")
    assert redactor.scrub_text("pw=xxabcdyy; other=abcd.") == f"pw={REDACTED}; other={REDACTED}."
