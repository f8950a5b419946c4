"""The chain's canonical JSON is a stored contract: every digest already stored
was computed from ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``. ``projections.audit.canonical`` writes it with orjson
(faster), so it must give the same bytes for everything an entry body holds."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.audit import TYPE_NAMES, _plain, canonical


def json_form(value: object) -> bytes:
    """The canonical form as first defined, with the standard library."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
    ).encode()


EVERY_CODE_POINT = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)


def test_every_code_point_is_written_alike_in_keys_and_values() -> None:
    chunks = [EVERY_CODE_POINT[i : i + 4096] for i in range(0, len(EVERY_CODE_POINT), 4096)]
    body = {"data": {chunk: chunk for chunk in chunks}, "list": chunks}
    assert canonical(body) == json_form(body)


plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(),
    st.uuids(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))])),
)
bodies = st.recursive(
    plain,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(bodies)
def test_any_body_of_plain_values_is_written_alike(value: Any) -> None:
    assert canonical({"data": value}) == json_form({"data": value})


@pytest.mark.parametrize(
    "value",
    [{"big": 2**70}, {"small": -(2**70)}, {"nested": {2: "int keys", 1: "sort as text"}}],
    ids=["beyond-64-bits", "below-64-bits", "keys-that-are-not-strings"],
)
def test_what_orjson_refuses_is_written_by_json_as_before(value: dict[str, Any]) -> None:
    assert canonical(value) == json_form(value)


@pytest.mark.parametrize("value", [{"set": {1, 2}}, {"bytes": b"x"}], ids=["set", "bytes"])
def test_a_value_that_is_not_plain_is_refused_as_before(value: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        json_form(value)
    with pytest.raises(TypeError):
        canonical(value)


def test_no_stored_event_holds_a_float_where_the_two_spellings_differ() -> None:
    # orjson writes 1e16 where json writes 1e+16: a float field would need json.
    for event_class in TYPE_NAMES:
        for name, hint in typing.get_type_hints(event_class).items():
            assert "float" not in str(hint), f"{event_class.__qualname__}.{name} is {hint}"


def test_a_utc_moment_and_the_same_moment_elsewhere_are_written_alike() -> None:
    moment = datetime(2026, 11, 27, 5, 0, 0, 1, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert canonical({"at": moment}) == canonical({"at": elsewhere}) == json_form({"at": moment})
    assert canonical({"at": moment}) == b'{"at":"2026-11-27T05:00:00.000001Z"}'
    assert canonical({"id": UUID(int=1)}) == b'{"id":"00000000-0000-0000-0000-000000000001"}'
