"""Offline verification of an audit export (R-AUD-4): no database, no network.

    python -m labtrack.audit.verify EXPORT --public-key KEY

EXPORT is the JSON-lines file from ``GET /api/v1/batches/{din}/audit-export`` (or
``-`` for standard input); KEY is the lab's public key in PEM, obtained out of band
or from ``GET /api/v1/audit/public-key``. The verifier checks that:

1. every event's hash is SHA-256 over ``prev_hash + "\\n" + canonical`` and the
   events form one unbroken chain from seq 1 (R-AUD-1), naming the batch and seq
   their canonical text claims;
2. the checkpoint's statement is signed by that key and states the root and size;
3. the checkpoint's leaf for this batch is ``din:seq:hash`` of an exported event,
   and the inclusion proof leads from that leaf to the signed root (RFC 6962);
4. no event after that leaf claims to have been recorded before the checkpoint was
   signed (beyond ``COMMIT_MARGIN``): such an event was inserted afterwards.

Exit status 0 when everything verifies (events recorded after the checkpoint are
reported as a warning: only their chain vouches for them), 1 when anything fails,
naming what and what it means, 2 when the files cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from labtrack.audit.keys import key_id_of, load_public_pem, signature_valid
from labtrack.audit.statement import COMMIT_MARGIN, parse_statement
from labtrack.domain.hashing import StoredLink, verify_links
from labtrack.domain.merkle import Leaf, verify_inclusion

READABLE_FIELDS = ("type", "occurred_at", "recorded_at", "actor")


@dataclass
class Findings:
    din: str | None = None
    events: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checkpoint_id: object = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _records(lines: list[str], outcome: Findings) -> dict[str, list[dict[str, Any]]]:
    records: dict[str, list[dict[str, Any]]] = {"header": [], "event": [], "checkpoint": [], "inclusion_proof": []}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            outcome.problems.append(f"line {number} is not JSON: the file is damaged or not an audit export")
            continue
        kind = record.get("record") if isinstance(record, dict) else None
        if kind not in records:
            outcome.problems.append(f"line {number} is not a header, event, checkpoint or inclusion_proof record")
            continue
        records[kind].append(record)
    return records


def _check_events(events: list[dict[str, Any]], outcome: Findings) -> dict[int, str]:
    """Chain and canonical text of the exported events; returns seq -> hash of the events read."""
    links = []
    for event in events:
        canonical = event.get("canonical")
        try:
            body = json.loads(canonical)
        except (TypeError, ValueError):
            outcome.problems.append(f"event seq {event.get('seq')}: its canonical text is missing or not JSON")
            continue
        if body.get("batch") != outcome.din or body.get("seq") != event.get("seq"):
            outcome.problems.append(
                f"event seq {event.get('seq')}: its canonical text belongs to batch {body.get('batch')} "
                f"seq {body.get('seq')}, not to {outcome.din} seq {event.get('seq')}: events were moved or spliced"
            )
        changed = [name for name in READABLE_FIELDS if name in event and event[name] != body.get(name)]
        if changed:
            outcome.problems.append(
                f"event seq {event.get('seq')}: the readable {', '.join(changed)} differ from the hashed canonical "
                "text; trust the canonical text, the readable copy was edited"
            )
        links.append(
            StoredLink(
                seq=event.get("seq"),
                prev_hash=event.get("prev_hash", ""),
                hash=event.get("hash", ""),
                canonical=canonical,
            )
        )
    broken = verify_links(links)
    if broken is not None:
        outcome.problems.append(
            f"event seq {broken.seq}: {broken.reason} — the record was altered, or events are missing, "
            "after it was written"
        )
    return {link.seq: link.hash for link in links}


def _check_checkpoint(checkpoint: dict[str, Any], public_key: Any, outcome: Findings) -> bool:
    outcome.checkpoint_id = checkpoint.get("id")
    name = f"checkpoint {checkpoint.get('id')}"
    if checkpoint.get("key_id") != key_id_of(public_key):
        outcome.problems.append(
            f"{name} was signed by key {checkpoint.get('key_id')}, not by the key given "
            f"({key_id_of(public_key)}): use the lab's public key, or the export is not from this lab"
        )
        return False
    statement = checkpoint.get("statement")
    if not isinstance(statement, str) or not signature_valid(
        public_key, str(checkpoint.get("signature", "")), statement.encode()
    ):
        outcome.problems.append(f"{name}: the signature does not verify over its statement; the checkpoint was forged")
        return False
    fields = parse_statement(statement)
    if fields is None or fields["root"] != checkpoint.get("root") or fields["tree_size"] != checkpoint.get("tree_size"):
        outcome.problems.append(f"{name}: its root or tree size differ from what the signed statement says")
        return False
    return True


def _utc(text: object) -> datetime | None:
    """An ISO 8601 time with its offset (as hashed and signed), or None."""
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _recorded_at(events: list[dict[str, Any]]) -> dict[int, datetime]:
    """seq -> recorded_at as the hashed canonical text states it (events whose text does not parse are left out)."""
    found: dict[int, datetime] = {}
    for event in events:
        try:
            moment = _utc(json.loads(event["canonical"])["recorded_at"])
        except (KeyError, TypeError, ValueError):
            continue
        if moment is not None and isinstance(event.get("seq"), int):
            found[event["seq"]] = moment
    return found


def _check_backdated(checkpoint: dict[str, Any], head: int, recorded: dict[int, datetime], outcome: Findings) -> None:
    fields = parse_statement(str(checkpoint.get("statement")))
    signed_at = _utc(fields["created_at"]) if fields else None
    if signed_at is None:
        outcome.problems.append(f"checkpoint {checkpoint.get('id')}: its signed statement has no valid time")
        return
    backdated = sorted(seq for seq, at in recorded.items() if seq > head and at < signed_at - COMMIT_MARGIN)
    if backdated:
        outcome.problems.append(
            f"event seq {backdated[0]} claims to have been recorded before checkpoint {checkpoint.get('id')}, "
            f"which signed seq {head} as the batch's head: it was inserted afterwards"
        )


def _check_proof(
    proof: dict[str, Any],
    checkpoint: dict[str, Any],
    hashes: dict[int, str],
    recorded: dict[int, datetime],
    outcome: Findings,
) -> None:
    try:
        leaf = Leaf.parse(str(proof["leaf"]))
        path = [bytes.fromhex(node) for node in proof["audit_path"]]
        index, size = int(proof["leaf_index"]), int(proof["tree_size"])
    except (KeyError, TypeError, ValueError):
        outcome.problems.append("the inclusion proof is incomplete or malformed")
        return
    if leaf.stream != outcome.din:
        outcome.problems.append(f"the inclusion proof is for {leaf.stream}, not for {outcome.din}")
        return
    if size != checkpoint.get("tree_size"):
        outcome.problems.append("the inclusion proof is for a tree of another size than the checkpoint's")
        return
    if not verify_inclusion(leaf.data, index, size, path, bytes.fromhex(str(checkpoint.get("root")))):
        outcome.problems.append(
            f"the inclusion proof does not lead from leaf {leaf} to the signed root: the leaf or the proof was altered"
        )
        return
    exported = hashes.get(leaf.seq)
    if exported is None:
        outcome.problems.append(f"the checkpoint signed event seq {leaf.seq}, which is missing from the export")
    elif exported != leaf.hash:
        outcome.problems.append(
            f"event seq {leaf.seq} has hash {exported}, but the checkpoint signed {leaf.hash}: the history was "
            "rewritten after the checkpoint (hashes recomputed to hide it)"
        )
    _check_backdated(checkpoint, leaf.seq, recorded, outcome)
    later = sorted(seq for seq in hashes if seq > leaf.seq)
    if later:
        outcome.warnings.append(
            f"events seq {later[0]}..{later[-1]} were recorded after checkpoint {checkpoint.get('id')}: only the "
            "hash chain vouches for them until the next checkpoint"
        )


def verify_export(lines: list[str], public_key: Any) -> Findings:
    """Check an export's lines offline: every event's hash and link, the head against the checkpoint, the
    inclusion proof and the checkpoint's signature by ``public_key``."""
    outcome = Findings()
    records = _records(lines, outcome)
    header = records["header"][0] if records["header"] else {}
    events = sorted(records["event"], key=lambda e: e.get("seq") if isinstance(e.get("seq"), int) else 0)
    outcome.events = len(events)
    outcome.din = header.get("din")
    if outcome.din is None and events:
        try:
            outcome.din = json.loads(events[0]["canonical"]).get("batch")
        except (KeyError, TypeError, ValueError):
            outcome.din = None
    if not events:
        outcome.problems.append("the export contains no events")
        return outcome
    hashes = _check_events(events, outcome)
    if header.get("head_seq") not in (None, events[-1].get("seq")):
        outcome.problems.append(
            f"the header says the batch's head is seq {header['head_seq']}, but the export ends at seq "
            f"{events[-1].get('seq')}: events were cut from the export"
        )
    if len(records["checkpoint"]) != 1 or len(records["inclusion_proof"]) != 1:
        outcome.problems.append("the export needs exactly one checkpoint and one inclusion proof")
        return outcome
    checkpoint = records["checkpoint"][0]
    if _check_checkpoint(checkpoint, public_key, outcome):
        _check_proof(records["inclusion_proof"][0], checkpoint, hashes, _recorded_at(events), outcome)
    return outcome


def report(outcome: Findings) -> str:
    """The findings as the command prints them: each problem and warning, then OK or FAILED."""
    lines = [f"FAIL: {problem}" for problem in outcome.problems]
    lines += [f"WARNING: {warning}" for warning in outcome.warnings]
    what = f"{outcome.din or 'unknown batch'}: {outcome.events} event(s), checkpoint {outcome.checkpoint_id}"
    lines.append(f"{'OK' if outcome.ok else 'FAILED'}: {what}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line: verify an export file (or standard input) with the lab's public key; 0 when it holds."""
    parser = argparse.ArgumentParser(
        prog="python -m labtrack.audit.verify", description="Verify a LabTrack audit export offline (R-AUD-4)."
    )
    parser.add_argument("export", help="the JSON-lines export file, or - for standard input")
    parser.add_argument("--public-key", required=True, help="the lab's Ed25519 public key (PEM file)")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.export == "-" else Path(args.export).read_text(encoding="utf-8")
        public_key = load_public_pem(Path(args.public_key).read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    outcome = verify_export(text.splitlines(), public_key)
    print(report(outcome))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
