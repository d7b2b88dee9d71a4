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


def test_a_registered_shape_masks_every_value_of_that_shape_and_values_still_count() -> None:
    """A shape (one regex for a family of generated secrets) masks each of its values; values are still masked."""
    redactor = Redactor()
    redactor.register("s3cret-value")
    redactor.register_shape(r"pxw-[A-Za-z0-9_-]{8}")
    redactor.register_shape(r"pxw-[A-Za-z0-9_-]{8}")  # twice: one pattern, not two
    text = "a=pxw-AbCd_-12 b=pxw-zzzzzzzz c=s3cret-value d=pxw-short"
    assert redactor.scrub_text(text) == f"a={REDACTED} b={REDACTED} c={REDACTED} d=pxw-short"


def test_a_value_overlapping_a_shape_match_is_masked_whole() -> None:
    """A registered value that begins inside a shape's match is masked with it, not cut in two."""
    redactor = Redactor()
    redactor.register_shape(r"pxw-[a-z]{4}")
    redactor.register("wxyz-tail")
    assert redactor.scrub_text("pxw-wxyz-tail!") == f"{REDACTED}!"


def test_a_short_text_scrubbed_before_a_secret_is_registered_is_masked_after() -> None:
    """The answers kept for short texts belong to the patterns of their time: a new secret is masked at once."""
    redactor = Redactor()
    redactor.register("first-secret")
    assert redactor.scrub_text("pw=later-secret") == "pw=later-secret"  # kept for these patterns
    redactor.register("later-secret")
    assert redactor.scrub_text("pw=later-secret") == f"pw={REDACTED}"
    redactor.register_shape(r"pxw-[a-z]{4}")
    assert redactor.scrub_text("pw=pxw-abcd") == f"pw={REDACTED}"


def test_the_answers_kept_for_short_texts_stay_bounded_and_a_restarted_cache_still_masks() -> None:
    """Many distinct short texts (an idempotency key per attempt) keep at most _SHORT_KEPT answers; masking holds."""
    from config import secrets

    redactor = Redactor()
    redactor.register("s3cret-value")
    for i in range(3 * secrets._SHORT_KEPT):
        assert redactor.scrub_text(f"pexip-conf-{i:05d}:deploy_ova:1") == f"pexip-conf-{i:05d}:deploy_ova:1"
        assert len(redactor._short[1]) <= secrets._SHORT_KEPT
    assert redactor.scrub_text("pw=s3cret-value") == f"pw={REDACTED}"
    assert redactor.scrub_text("pw=s3cret-value") == f"pw={REDACTED}"  # the kept answer too
