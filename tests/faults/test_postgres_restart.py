"""PostgreSQL restarted under load, and stopped outright: requests answer 503 problem+json (never 500),
the app recovers by itself (``pool_pre_ping``, no restart of the app), and no batch is left half-written.

The cluster is the session's private one (tests/faults/conftest.py), never the shared server.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from tests.faults.conftest import HttpClient, assert_nothing_half_written, unavailable
from tests.helpers import PROCESS_ORDER, Lab, now
from tests.workers.support import wait_until

pytestmark = pytest.mark.postgres

CLIENTS = 4
RETRY_FOR_S = 60


@pytest.fixture
def database_url(private_database: str) -> str:
    return private_database


@pytest.fixture(params=["flask test client", "gunicorn"])
def connect(request, app) -> Callable[[], object]:
    """A new HTTP client: Flask's test client in this process, or real HTTP to gunicorn's workers."""
    if request.param == "gunicorn":
        base = request.getfixturevalue("gunicorn")
        return lambda: HttpClient(base)
    return app.test_client


@dataclass
class Tally:
    """What the clients saw: every answer, and any that was neither the expected one nor a clean 503."""

    writes: Counter = field(default_factory=Counter)
    reads: Counter = field(default_factory=Counter)
    wrong: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, label: str, response, expected: int) -> None:
        with self.lock:
            (self.reads if expected == 200 else self.writes)[response.status_code] += 1
            if response.status_code != expected and not unavailable(response, "unreachable"):
                self.wrong.append((label, response.status_code, response.get_json(silent=True)))

    def run(self, work) -> threading.Thread:
        """A client thread whose failure is recorded, not lost with the thread."""

        def guarded() -> None:
            try:
                work()
            except Exception as error:
                with self.lock:
                    self.wrong.append(("thread", repr(error), None))

        thread = threading.Thread(target=guarded)
        thread.start()
        return thread


class Client:
    """A bench client: sends one request, and on 503 sends the same request again until it is answered.

    A 503 that had written anything shows on the retry (409: the step is done already; or a second
    patient or batch), and in the final streams: that is how a lost or half-done request would show.
    """

    def __init__(self, lab: Lab, tally: Tally, name: str, http) -> None:
        self.lab = replace(lab, client=http, tokens=dict(lab.tokens))
        self.tally = tally
        self.name = name

    def send(self, label: str, request, expected: int = 201):
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            response = request()
            self.tally.record(label, response, expected)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response.get_json() if response.status_code == expected else None
            time.sleep(0.05)

    def journey(self, number: int) -> str | None:
        """Register, harvest, hand off, receive, process and open a deviation: nine requests."""
        lab, mrn = self.lab, f"{self.name}-{number}"
        body = {"mrn": mrn, "family_name": "Doe", "given_name": "Jane", "birth_date": "1980-05-17"}
        patient = self.send("patient", lambda: lab.post("clinic", "/patients", body))
        order = {"patient_id": patient and patient["id"], "tissue_source": "adipose"}
        batch = patient and self.send("batch", lambda: lab.post("clinic", "/batches", order))
        if batch is None:
            return None
        din = batch["din"]
        ended = now() - timedelta(minutes=10)
        harvest = {"patient_mrn": mrn, "started_at": (ended - timedelta(minutes=40)).isoformat()}
        harvest["ended_at"] = ended.isoformat()
        deviation = {"kind": "manual", "description": mrn}
        requests = [
            ("harvest", lambda: lab.harvest(din, **harvest)),
            ("handoff", lambda: lab.handoff(din)),
            ("receipt", lambda: lab.receive(din)),
            *((name, lambda name=name: lab.step(din, name)) for name in PROCESS_ORDER["adipose"]),
            ("deviation", lambda: lab.post("tech", f"/batches/{din}/deviations", deviation)),
        ]
        for label, request in requests:
            if self.send(label, request) is None:
                return None
        return din


def stream_types(lab: Lab, din: str) -> list[str]:
    return [event["type"] for event in lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)]


def test_postgres_restarted_under_load_answers_201_or_503_and_leaves_every_journey_whole(lab, private_cluster, connect):
    lab.headers("clinic"), lab.headers("tech"), lab.headers("qa")
    tally = Tally()
    expected_types = stream_types(lab, Client(lab, tally, "warmup", connect()).journey(0))
    assert expected_types[0] == "registered"
    assert expected_types[-1] == "deviation_opened"
    stop = threading.Event()
    journeys: dict[str, list[str | None]] = {}

    def client(name: str) -> None:
        bench, done = Client(lab, tally, name, connect()), journeys.setdefault(name, [])
        while not stop.is_set():
            done.append(bench.journey(len(done)))

    def reader() -> None:
        board = replace(lab, client=connect(), tokens=dict(lab.tokens))
        while not stop.is_set():
            tally.record("read", board.get("qa", "/batches"), 200)
            time.sleep(0.02)  # a board refreshing, not a spin on the outage

    threads = [tally.run(lambda name=f"C{n}": client(name)) for n in range(CLIENTS)]
    threads.append(tally.run(reader))
    try:
        assert wait_until(lambda: tally.writes[201] >= 4 * CLIENTS, 60)
        # a clean restart (sessions terminated), then a crash (no shutdown checkpoint: WAL recovery on start)
        for fault in (private_cluster.restart, private_cluster.crash_and_start):
            wanted = tally.writes[201] + 8 * CLIENTS
            fault()
            assert wait_until(lambda wanted=wanted: tally.writes[201] >= wanted, 60), f"no recovery: {fault}"
    finally:
        stop.set()
        for thread in threads:
            thread.join(RETRY_FOR_S + 30)

    assert tally.wrong == [], tally.wrong[:5]
    assert tally.writes[503] > 0, "the restart was not felt: no request saw it"
    dins = [din for done in journeys.values() for din in done]
    assert None not in dins
    for din in dins:
        assert stream_types(lab, din) == expected_types, din
    per_patient = lab.sql("SELECT count(*) AS n FROM batches GROUP BY patient_id HAVING count(*) > 1")
    assert per_patient == [], "a 503 that created a batch anyway"
    assert_nothing_half_written(lab)
    print(
        f"\nfaults: a PostgreSQL restart and a crash; {sum(tally.writes.values())} writes sent "
        f"({dict(tally.writes)}), {sum(tally.reads.values())} reads ({dict(tally.reads)}); "
        f"{len(dins)} journeys whole, 0 lost"
    )


def test_pooled_connections_left_stale_by_a_restart_are_replaced_before_use(lab, private_cluster):
    """The pool holds connections the restart killed; pool_pre_ping replaces them, so the first
    request after the restart already succeeds and the app needs no restart."""
    din = lab.at_lab()
    private_cluster.restart()
    lab.ok(lab.step(din, "digestion"))
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["seq"] == 5


def test_while_postgres_is_down_reads_writes_and_pages_answer_503_then_recover(lab, private_cluster, sign_in):
    din = lab.at_lab()
    browser = sign_in("qa")
    lab.headers("qa")
    private_cluster.stop()
    try:
        for response in (
            lab.get("qa", f"/batches/{din}"),
            lab.get("qa", "/audit/verify"),
            lab.step(din, "digestion"),
            lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": "outage"}),
        ):
            assert unavailable(response, "unreachable"), (response.status_code, response.get_data(as_text=True)[:300])
        page = browser.get(f"/batches/{din}")
        assert page.status_code == 503
        assert "The database cannot be reached" in page.text
    finally:
        private_cluster.start()
    lab.ok(lab.step(din, "digestion"))
    assert stream_types(lab, din)[-1] == "digestion"
    assert browser.get(f"/batches/{din}").status_code == 200
    assert_nothing_half_written(lab)
