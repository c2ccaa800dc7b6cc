"""The event hash chain: canonical body, link hash, verification (R-AUD-1, R-AUD-3)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labtrack.domain.hashing import (
    GENESIS_HASH,
    StoredLink,
    canonical_body,
    chain,
    iso_utc,
    link_hash,
    verify_links,
)

DIN = "A999926000123"
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _body(seq: int, data: dict, *, type: str = "step") -> str:
    return canonical_body(
        stream_key=DIN,
        seq=seq,
        type=type,
        occurred_at=T0 + timedelta(minutes=seq),
        recorded_at=T0 + timedelta(minutes=seq, seconds=1),
        actor="tech",
        data=data,
    )


def _links(datas: list[dict]) -> list[StoredLink]:
    """A stream as the database stores it: each event chained to the previous one's hash."""
    links, prev = [], GENESIS_HASH
    for seq, data in enumerate(datas, start=1):
        event = chain(prev, _body(seq, data))
        links.append(StoredLink(seq=seq, prev_hash=prev, hash=event.hash, canonical=event.canonical))
        prev = event.hash
    return links


def test_r_aud_1_genesis_prev_hash_is_64_zeros():
    assert GENESIS_HASH == "0" * 64


def test_r_aud_1_times_are_utc_with_z_and_microseconds():
    assert iso_utc(datetime(2026, 3, 1, 9, 30, tzinfo=UTC)) == "2026-03-01T09:30:00.000000Z"
    paris = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 3, 1, 10, 30, 0, 5, tzinfo=paris)) == "2026-03-01T09:30:00.000005Z"
    with pytest.raises(ValueError):  # noqa: PT011 - a naive time has no instant to hash
        iso_utc(datetime(2026, 3, 1, 9, 30))


def test_r_aud_1_hash_cross_checked_with_hashlib_and_json():
    occurred = datetime(2026, 3, 1, 10, 30, 15, 250, tzinfo=timezone(timedelta(hours=1)))
    data = {"step": "digestion", "values": {"duration_min": 45, "temperature_c": 37}, "scanned_din": DIN}
    canonical = canonical_body(
        stream_key=DIN,
        seq=3,
        type="digestion",
        occurred_at=occurred,
        recorded_at=occurred + timedelta(minutes=2),
        actor="tech",
        data=data,
    )
    # For ASCII text and integers, JCS equals sorted keys with no whitespace.
    expected_body = {
        "batch": DIN,
        "seq": 3,
        "type": "digestion",
        "occurred_at": "2026-03-01T09:30:15.000250Z",
        "recorded_at": "2026-03-01T09:32:15.000250Z",
        "actor": "tech",
        "data": data,
    }
    assert canonical == json.dumps(expected_body, sort_keys=True, separators=(",", ":"))
    prev = "ab" * 32
    expected_hash = hashlib.sha256((prev + "\n" + canonical).encode("utf-8")).hexdigest()
    assert link_hash(prev, canonical) == expected_hash
    assert chain(prev, canonical).hash == expected_hash


def test_r_aud_1_canonical_body_is_rfc_8785_not_python_json():
    # JCS writes 250.0 as 250 and keeps non-ASCII text as UTF-8; json.dumps would not.
    canonical = _body(1, {"volume_ml": 250.0, "site": "Ünterbauch", "ratio": 1e21})
    assert '"volume_ml":250}' in canonical
    assert '"site":"Ünterbauch"' in canonical
    assert '"ratio":1e+21' in canonical


def test_r_aud_1_body_holds_exactly_the_seven_fields():
    assert set(json.loads(_body(1, {"a": 1}))) == {
        "batch",
        "seq",
        "type",
        "occurred_at",
        "recorded_at",
        "actor",
        "data",
    }


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
event_datas = st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), min_size=1, max_size=8)


@given(datas=event_datas)
@settings(max_examples=60, deadline=None)
def test_r_aud_1_chain_built_with_chain_verifies(datas):
    links = _links(datas)
    assert verify_links(links) is None
    assert links[0].prev_hash == GENESIS_HASH
    for link in links:
        assert json.loads(link.canonical)["seq"] == link.seq
    # With the canonical text recomputed from the columns, it still verifies.
    recomputed = [
        replace(link, expected_canonical=_body(link.seq, data)) for link, data in zip(links, datas, strict=True)
    ]
    assert verify_links(recomputed) is None


@given(datas=event_datas.filter(lambda d: len(d) >= 2), data=st.data())
@settings(max_examples=60, deadline=None)
def test_r_aud_3_changed_canonical_character_is_reported_at_its_seq(datas, data):
    links = _links(datas)
    k = data.draw(st.integers(min_value=1, max_value=len(links)), label="seq")
    text = links[k - 1].canonical
    at = data.draw(st.integers(min_value=0, max_value=len(text) - 1), label="position")
    replacement = "X" if text[at] != "X" else "Y"
    links[k - 1] = replace(links[k - 1], canonical=text[:at] + replacement + text[at + 1 :])
    broken = verify_links(links)
    assert broken is not None
    assert broken.seq == k


@given(datas=event_datas.filter(lambda d: len(d) >= 2), data=st.data())
@settings(max_examples=60, deadline=None)
def test_r_aud_3_canonical_text_differing_from_its_columns_is_reported_at_its_seq(datas, data):
    # A changed column (e.g. data) with the stored canonical text and hash left alone.
    k = data.draw(st.integers(min_value=1, max_value=len(datas)), label="seq")
    links = [replace(link, expected_canonical=_body(link.seq, d)) for link, d in zip(_links(datas), datas, strict=True)]
    links[k - 1] = replace(links[k - 1], expected_canonical=_body(k, {**datas[k - 1], "tampered": True}))
    broken = verify_links(links)
    assert broken is not None
    assert broken.seq == k
    assert "canonical" in broken.reason


@given(datas=event_datas.filter(lambda d: len(d) >= 2), data=st.data())
@settings(max_examples=60, deadline=None)
def test_r_aud_3_two_swapped_events_are_reported_at_the_first(datas, data):
    links = _links(datas)
    i = data.draw(st.integers(min_value=1, max_value=len(links) - 1), label="first")
    j = data.draw(st.integers(min_value=i + 1, max_value=len(links)), label="second")
    # Reordering history keeps the seq column in order and swaps what is stored under it ...
    contents = [(link.prev_hash, link.hash, link.canonical) for link in links]
    contents[i - 1], contents[j - 1] = contents[j - 1], contents[i - 1]
    renumbered = [StoredLink(seq, *content) for seq, content in enumerate(contents, start=1)]
    broken = verify_links(renumbered)
    assert broken is not None
    assert broken.seq == i
    # ... and a reader handed the rows in the wrong order also finds the break at the first.
    links[i - 1], links[j - 1] = links[j - 1], links[i - 1]
    broken = verify_links(links)
    assert broken is not None
    assert broken.seq == i


@given(datas=event_datas.filter(lambda d: len(d) >= 2), data=st.data())
@settings(max_examples=60, deadline=None)
def test_r_aud_3_dropped_event_is_reported_at_its_seq(datas, data):
    links = _links(datas)
    # A dropped last event leaves an intact chain: the batch's head catches that (audit/chains.py).
    k = data.draw(st.integers(min_value=1, max_value=len(links) - 1), label="seq")
    del links[k - 1]
    broken = verify_links(links)
    assert broken is not None
    assert broken.seq == k


@given(datas=event_datas, data=st.data())
@settings(max_examples=60, deadline=None)
def test_r_aud_3_changed_prev_hash_is_reported_at_its_seq(datas, data):
    links = _links(datas)
    k = data.draw(st.integers(min_value=1, max_value=len(links)), label="seq")
    forged = data.draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), label="prev_hash")
    if forged == links[k - 1].prev_hash:
        forged = ("1" if forged[0] == "0" else "0") + forged[1:]
    links[k - 1] = replace(links[k - 1], prev_hash=forged)
    broken = verify_links(links)
    assert broken is not None
    assert broken.seq == k
