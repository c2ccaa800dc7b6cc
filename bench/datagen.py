"""Fast generation of many batches with valid hash chains, by COPY (readiness and audit benchmarks).

Each generated batch is an adipose batch at ``processed``, in the lab's custody, with
``events_per_batch`` events: registration, harvest, hand-off, receipt, the three lab
steps, then label prints. Every event's canonical text and hash are computed with
``labtrack.domain.hashing`` exactly as ``append_batch_event`` does, so
``labtrack.audit.chains.verify`` accepts the result.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count

from psycopg.types.json import Jsonb
from sqlalchemy import Engine

from labtrack.clock import utcnow
from labtrack.domain.din import MAX_SEQUENCE, format_din
from labtrack.domain.hashing import GENESIS_HASH, canonical_body, chain, jsonable

FACILITY = "A9998"  # not the app's own FIN, so generated DINs never meet allocated ones
LAB_STEPS = ("digestion", "isolation", "concentration")
BATCH_COLUMNS = (
    "id, din, patient_id, clinic_id, tissue_source, product, specification_id, status, custodian_id, held, "
    "steps_done, expires_at, conditional_release, last_physical_at, registered_at, seq, head_hash"
)
CHUNK = 2000
PROCESSES = 2  # the machine's cores
EVENT_COLUMNS = "batch_id, seq, type, occurred_at, recorded_at, actor_id, data, prev_hash, hash, canonical"


@dataclass(frozen=True)
class People:
    patient_id: int
    clinic_id: int
    specification_id: int
    clinic_user: tuple[int, str]
    tech: tuple[int, str]


def _events(din: str, start: datetime, people: People, total: int):
    clinic, tech = people.clinic_user, people.tech
    yield "registered", clinic, {"clinic": "C1", "tissue_source": "adipose", "product": "SVF"}
    yield "harvest", clinic, {"step": "harvest", "scanned_din": din, "values": {"volume_ml": 150, "weight_kg": 80}}
    yield "handoff", clinic, {"to": tech[1], "seal_id": "SEAL-G", "temperature_c": 6}
    yield "receipt", tech, {"seal_id": "SEAL-G", "temperature_c": 6, "condition": "intact"}
    for step in LAB_STEPS:
        yield step, tech, {"step": step, "scanned_din": din, "values": {"duration_min": 10}}
    for copy in range(total - 7):
        yield "label_printed", tech, {"copy": copy + 1, "at": start + timedelta(minutes=copy)}


_SENTINEL = "@" * 13  # stands for the DIN in a canonical text made once per chunk (it needs no escaping)


def _din(sequence: int, year: int) -> str:
    """The ``sequence``-th generated DIN, counting back a year for every 999,999."""
    back, serial = divmod(sequence - 1, MAX_SEQUENCE)
    return format_din(FACILITY, year - back, serial + 1).value


def _chunk(people: People, ids: list[int], first_sequence: int, events_per_batch: int):
    """Rows for one chunk of batches: the projections (with their heads) and the chained events.

    Every batch of a chunk has the same events at the same moments, so each event's canonical text
    is made once (``canonical_body``) with a stand-in for the DIN, which each batch then puts in.
    """
    now = utcnow()
    start = now - timedelta(hours=2)
    journey = []
    for seq, (kind, (actor_id, actor_name), data) in enumerate(
        _events(_SENTINEL, start, people, events_per_batch), start=1
    ):
        moment = start + timedelta(seconds=seq)
        body = canonical_body(
            stream_key=_SENTINEL, seq=seq, type=kind, occurred_at=moment, recorded_at=moment, actor=actor_name,
            data=data,
        )  # fmt: skip
        journey.append((seq, kind, moment, actor_id, jsonable(data), body))
    batch_rows, event_rows = [], []
    for batch_id, sequence in zip(ids, count(first_sequence), strict=False):
        din = _din(sequence, now.year)
        prev = GENESIS_HASH
        for seq, kind, moment, actor_id, data, template in journey:
            body = template.replace(_SENTINEL, din)
            if "scanned_din" in data:
                data = data | {"scanned_din": din}
            link = chain(prev, body)
            event_rows.append((batch_id, seq, kind, moment, moment, actor_id, Jsonb(data), prev, link.hash, body))
            prev = link.hash
        batch_rows.append(
            (batch_id, din, people.patient_id, people.clinic_id, "adipose", "SVF", people.specification_id,
             "processed", people.tech[0], False, Jsonb(list(LAB_STEPS)), now + timedelta(hours=20), False,
             start + timedelta(seconds=7), start, len(journey), prev)
        )  # fmt: skip
    return batch_rows, event_rows


def _chunk_of(task: tuple[People, list[int], int, int]):
    return _chunk(*task)


def generate(engine: Engine, people: People, batches: int, events_per_batch: int, first_sequence: int) -> int:
    """Insert ``batches`` batches of ``events_per_batch`` events; returns the next free DIN sequence.

    Batches go in before their events (the foreign key), so each chunk is computed in
    memory first, by ``PROCESSES`` processes while this one copies the previous chunk in;
    one transaction per chunk keeps memory flat. The batch ids are taken from the sequence
    in one block first (nothing else registers batches in a bench database).
    """
    if events_per_batch < 7:
        raise ValueError("a generated batch has at least its 7 journey events")
    if batches <= 0:
        return first_sequence
    connection = engine.raw_connection()
    try:
        pg = connection.driver_connection
        with pg.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence('batches', 'id'))")
            first_id = cursor.fetchone()[0]
            cursor.execute("SELECT setval(pg_get_serial_sequence('batches', 'id'), %s)", [first_id + batches - 1])
            _make_room(cursor, first_id + batches - 1)
        pg.commit()
        tasks = (
            (people, list(range(first_id + done, first_id + min(done + CHUNK, batches))), first_sequence + done,
             events_per_batch)
            for done in range(0, batches, CHUNK)
        )  # fmt: skip
        with multiprocessing.get_context("fork").Pool(PROCESSES) as pool:
            for batch_rows, event_rows in pool.imap(_chunk_of, tasks):
                with pg.cursor() as cursor:
                    with cursor.copy(f"COPY batches ({BATCH_COLUMNS}) FROM STDIN") as copy:
                        for row in batch_rows:
                            copy.write_row(row)
                    with cursor.copy(f"COPY batch_events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                        for row in event_rows:
                            copy.write_row(row)
                pg.commit()
    finally:
        connection.close()
    settle(engine)
    return first_sequence + batches


PARTITION_WIDTH = 100_000


def _make_room(cursor, top_batch_id: int) -> None:
    """On a partitioned ``batch_events`` (migration 0011), the partitions these batch ids need, as beat makes them."""
    cursor.execute("SELECT to_regprocedure('labtrack_extend_batch_events(bigint, bigint)') IS NOT NULL")
    if cursor.fetchone()[0]:
        cursor.execute("SELECT labtrack_extend_batch_events(%s, %s)", [top_batch_id + 1, PARTITION_WIDTH])


def settle(engine: Engine) -> None:
    """VACUUM (ANALYZE) the database: what autovacuum would have done to rows that arrived over years.

    Without it, autovacuum catches up on a bulk load during the measurement that follows, and
    takes one of the two cores.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE)")
