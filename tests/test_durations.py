"""Durations as people write them: ``250ms``, ``30s``, ``5m``, ``1h`` or a number of seconds.

`parse_duration` reads one into seconds (a float); `format_duration` writes
seconds back in the shortest exact spelling, which `parse_duration` reads
back to the very same float (that is what makes a playbook round-trip).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from noetl_actors.playbook import format_duration, parse_duration

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
ACCEPTED = "use 250ms, 30s, 5m, 1h or seconds"

seconds = st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)
whole = st.integers(min_value=0, max_value=10**7)


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("0", 0.0),
        ("45", 45.0),
        ("2.5", 2.5),
        (" 10 s ", 10.0),
        ("0ms", 0.0),
    ],
)
def test_the_usual_spellings_read_as_seconds(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@given(n=whole)
def test_a_number_is_a_number_of_seconds(n: int) -> None:
    assert parse_duration(n) == n
    assert parse_duration(n / 4) == n / 4
    assert isinstance(parse_duration(n), float)


@pytest.mark.parametrize("unit", ["s", "m", "h"])
@given(n=whole)
def test_whole_seconds_minutes_and_hours_scale_exactly(unit: str, n: int) -> None:
    assert parse_duration(f"{n}{unit}") == n * UNITS[unit]
    assert parse_duration(f"{n}{unit}") == parse_duration(n * UNITS[unit])


@given(n=whole)
@example(n=700)
def test_n_milliseconds_read_as_the_number_n_over_1000(n: int) -> None:
    # "700ms" is 0.7 s, the float a person gets by writing 0.7, not 0.7000000000000001.
    assert parse_duration(f"{n}ms") == n / 1000


@given(n=whole)
def test_the_same_duration_spelled_in_two_units_is_the_same(n: int) -> None:
    assert parse_duration(f"{n}h") == parse_duration(f"{n * 60}m") == parse_duration(
        f"{n * 3600}s"
    )


# -- writing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.25, "250ms"),
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (3600, "1h"),
        (5400, "90m"),
        (7200, "2h"),
        (1.5, "1500ms"),
        (0.0, "0s"),
        (0, "0s"),
    ],
)
def test_a_duration_is_written_in_its_largest_whole_unit(value: float, text: str) -> None:
    assert format_duration(value) == text


@given(n=whole)
def test_whole_seconds_round_trip(n: int) -> None:
    assert parse_duration(format_duration(float(n))) == n


@given(n=whole, unit=st.sampled_from(["s", "m", "h"]))
def test_what_is_written_reads_back_as_the_same_text(n: int, unit: str) -> None:
    text = format_duration(parse_duration(f"{n}{unit}"))
    assert parse_duration(text) == parse_duration(f"{n}{unit}")


@given(x=seconds)
@example(x=0.7)
@example(x=1e-7)
@example(x=1.2345678)
def test_any_non_negative_duration_round_trips_exactly(x: float) -> None:
    assert parse_duration(format_duration(x)) == x


@given(x=seconds)
@example(x=1e-7)
def test_what_format_duration_writes_is_always_a_duration(x: float) -> None:
    text = format_duration(x)

    parse_duration(text)  # does not raise
    assert text.endswith(("ms", "s", "m", "h"))


# -- refusing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["10 parsecs", "1d", "", "  ", "-1s", "s", "1.2.3s", "1 h 30 m", "five seconds",
     "nan", "inf", None, [1], {"s": 1}],
)
def test_garbage_is_refused_with_a_message_showing_what_is_accepted(value: object) -> None:
    with pytest.raises(ValueError, match="is not a duration") as caught:
        parse_duration(value)

    assert ACCEPTED in str(caught.value)
    assert repr(value) in str(caught.value)


@given(text=st.text(max_size=12).filter(lambda t: not any(c.isdigit() for c in t)))
def test_text_without_a_digit_is_never_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="use 250ms, 30s, 5m, 1h or seconds"):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_a_number_of_seconds(value: bool) -> None:
    with pytest.raises(ValueError, match=f"{value!r} is not a duration") as caught:
        parse_duration(value)

    assert ACCEPTED in str(caught.value)


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf"), float("-inf")])
def test_a_negative_or_non_finite_number_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="must be finite and not negative"):
        parse_duration(value)


@given(x=st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False))
def test_every_negative_number_is_refused(x: float) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(x)
