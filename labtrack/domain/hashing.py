"""The event hash chain (R-AUD-1).

hash = hex SHA-256 over UTF-8( prev_hash + "\\n" + JCS(body) ), where body is
``{batch, seq, type, occurred_at, recorded_at, actor, data}`` canonicalised with
RFC 8785. The first event of a stream has a prev_hash of 64 zeros. The canonical
text is stored with each event so verifiers in any language can recompute it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import rfc8785

GENESIS_HASH = "0" * 64


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with ``Z`` and microseconds, the one time format hashed."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime cannot be hashed")
    # isoformat, not strftime("%Y"), which gives year 792 as "792" (PostgreSQL's to_char gives "0792")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """Normalise event data to what RFC 8785 accepts (times as UTC text)."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class ChainedEvent:
    canonical: str
    hash: str


def canonical_body(
    *,
    stream_key: str,
    seq: int,
    type: str,
    occurred_at: datetime,
    recorded_at: datetime,
    actor: str,
    data: dict[str, Any],
    stream_field: str = "batch",
) -> str:
    body = {
        stream_field: stream_key,
        "seq": seq,
        "type": type,
        "occurred_at": iso_utc(occurred_at),
        "recorded_at": iso_utc(recorded_at),
        "actor": actor,
        "data": jsonable(data),
    }
    return rfc8785.dumps(body).decode("utf-8")


def link_hash(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def chain(prev_hash: str, canonical: str) -> ChainedEvent:
    return ChainedEvent(canonical=canonical, hash=link_hash(prev_hash, canonical))


@dataclass(frozen=True)
class StoredLink:
    """What a verifier reads back for one event."""

    seq: int
    prev_hash: str
    hash: str
    canonical: str
    expected_canonical: str | None = None  # recomputed from the row's columns


@dataclass(frozen=True)
class BrokenLink:
    seq: int
    reason: str


def verify_links(links: list[StoredLink], *, first: int = 1, prev_hash: str = GENESIS_HASH) -> BrokenLink | None:
    """Return the first broken link of one stream, or None when it verifies (R-AUD-3).

    ``first`` and ``prev_hash`` let a verifier start after a head it already trusts (R-SCL-2):
    the links are then seqs ``first``, ``first + 1``, ... and the first one's ``prev_hash`` is that head's hash.
    """
    expected_prev = prev_hash
    for position, link in enumerate(links, start=first):
        if link.seq != position:
            # Name the missing seq, as the head check does for a missing tail (audit/chains.py).
            return BrokenLink(position, f"sequence gap: expected seq {position}, found {link.seq}")
        if link.prev_hash != expected_prev:
            return BrokenLink(link.seq, "prev_hash does not match the previous event's hash")
        if link.expected_canonical is not None and link.expected_canonical != link.canonical:
            return BrokenLink(link.seq, "stored canonical text does not match the event's fields")
        if link_hash(link.prev_hash, link.canonical) != link.hash:
            return BrokenLink(link.seq, "hash does not match the canonical text")
        expected_prev = link.hash
    return None
