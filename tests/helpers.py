"""Factories for test data: reference data through the services, everything else through the API."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from labtrack.db import Database
from labtrack.services import reference

T = TypeVar("T")
PASSWORD = "correct-horse-battery"
USERS = {
    "admin": ("Ada Admin", "admin", None),
    "tech": ("Tomas Bench", "technician", None),
    "tech2": ("Tara Second", "technician", None),
    "qa": ("Quinn Assurance", "qa", None),
    "qa2": ("Quincy Reviewer", "qa", None),
    "clinic": ("Clara Clinic", "clinic", "C1"),
    "clinic_b": ("Carl Colleague", "clinic", "C1"),
    "other": ("Olga Elsewhere", "clinic", "C2"),
}


def now() -> datetime:
    return datetime.now(UTC)


def harvest_end(moment: datetime) -> datetime:
    """When a test's harvest ended, seen at ``moment``: ten minutes before, but the same day (UTC, the tests' lab
    zone), since the follow-up windows count from the harvest's day and the tests expect them to count from today."""
    return max(moment - timedelta(minutes=10), moment.replace(hour=0, minute=0, second=0, microsecond=0))


def iso(moment: datetime) -> str:
    return moment.isoformat()


def remembered(helper: Callable[..., T]) -> Callable[..., T]:
    """A journey helper whose database the run keeps when it is a test's first write (``Lab.journeys``, the
    conftest's ``JourneyStates``): later tests asking for the same journey get those rows put back instead of
    making them again. Calls within it, and every later call in the test, run as written."""

    @functools.wraps(helper)
    def journey(self: Lab, *args: Any, **kwargs: Any) -> T:
        journeys, self.journeys = self.journeys, None
        if journeys is None:
            return helper(self, *args, **kwargs)
        key = repr((helper.__name__, args, sorted(kwargs.items())))
        return journeys.reach(self, key, lambda: helper(self, *args, **kwargs))

    return journey


@dataclass
class Lab:
    app: Flask
    client: FlaskClient
    db: Database
    tokens: dict[str, str] = field(default_factory=dict)
    lots: dict[str, int] = field(default_factory=dict)
    journeys: Any = None  # the run's kept journeys, until the test's first journey helper

    @classmethod
    def build(cls, app: Flask, client: FlaskClient) -> Lab:
        database: Database = app.extensions["labtrack.db"]
        lab = cls(app=app, client=client, db=database)

        def work(session) -> None:
            system = reference.system_actor("test-setup")
            reference.create_clinic(session, system, code="C1", name="First Clinic")
            reference.create_clinic(session, system, code="C2", name="Second Clinic")
            for username, (full_name, role, clinic) in USERS.items():
                reference.create_user(
                    session,
                    system,
                    username=username,
                    full_name=full_name,
                    role=role,
                    password=PASSWORD,
                    clinic=clinic,
                )
            today = date.today()
            for key, kind, number, expires, status in (
                ("collagenase", "collagenase", "CG-1", today + timedelta(days=90), "released"),
                ("separation_kit", "separation_kit", "SK-1", today + timedelta(days=90), "released"),
                ("quarantined", "collagenase", "CG-Q", today + timedelta(days=90), "quarantined"),
                ("expired", "collagenase", "CG-X", today - timedelta(days=1), "released"),
            ):
                lot = reference.create_lot(
                    session,
                    system,
                    kind=kind,
                    name=f"{kind} lot",
                    lot_number=number,
                    expires_on=expires,
                    status=status,
                )
                lab.lots[key] = lot.id
            for code, kind, due, status in (
                ("INC-1", "incubator", today + timedelta(days=30), "in_service"),
                ("CEN-1", "centrifuge", today + timedelta(days=30), "in_service"),
                ("CEN-OUT", "centrifuge", today + timedelta(days=30), "out_of_service"),
                ("CEN-DUE", "centrifuge", today - timedelta(days=1), "in_service"),
            ):
                reference.create_equipment(
                    session,
                    system,
                    code=code,
                    kind=kind,
                    name=f"{kind} {code}",
                    calibration_due_on=due,
                    status=status,
                )

        database.write(work)
        return lab

    # --- HTTP -------------------------------------------------------------------------------

    def headers(self, username: str) -> dict[str, str]:
        if username not in self.tokens:
            response = self.client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
            assert response.status_code == 200, response.get_json()
            self.tokens[username] = response.get_json()["token"]
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def post(self, username: str, path: str, body: Any = None, **headers: str):
        return self.client.post(f"/api/v1{path}", json=body, headers=self.headers(username) | headers)

    def patch(self, username: str, path: str, body: Any = None):
        return self.client.patch(f"/api/v1{path}", json=body, headers=self.headers(username))

    def get(self, username: str, path: str, **query: Any):
        return self.client.get(f"/api/v1{path}", query_string=query, headers=self.headers(username))

    def ok(self, response, status: int = 201) -> Any:
        assert response.status_code == status, (response.status_code, response.get_json())
        return response.get_json()

    # --- the journey ------------------------------------------------------------------------

    @remembered
    def patient(self, mrn: str = "MRN-1", *, by: str = "clinic", birth_date: str = "1980-05-17", **extra: Any) -> dict:
        body = {"mrn": mrn, "family_name": "Doe", "given_name": "Jane", "birth_date": birth_date} | extra
        return self.ok(self.post(by, "/patients", body))

    @remembered
    def batch(self, tissue_source: str = "adipose", *, mrn: str = "MRN-1", by: str = "clinic") -> str:
        patient = self.patient(mrn, by=by) if by == "clinic" else self.patient(mrn, by=by, clinic="C1")
        return self.ok(self.post(by, "/batches", {"patient_id": patient["id"], "tissue_source": tissue_source}))["din"]

    def harvest_data(self, tissue_source: str = "adipose", **overrides: Any) -> dict:
        ended = harvest_end(now())
        data = {
            "patient_mrn": "MRN-1",
            "patient_birth_date": "1980-05-17",
            "weight_kg": 80,
            "volume_ml": 150 if tissue_source == "adipose" else 60,
            "site": "abdomen" if tissue_source == "adipose" else "posterior_iliac_crest",
            "started_at": iso(ended - timedelta(minutes=40)),
            "ended_at": iso(ended),
        }
        if tissue_source == "bone_marrow":
            data["anticoagulant"] = "heparin"
        return data | overrides

    def harvest(self, din: str, tissue_source: str = "adipose", *, by: str = "clinic", **overrides: Any):
        return self.post(
            by,
            f"/batches/{din}/steps",
            {"step": "harvest", "scanned_din": din, "data": self.harvest_data(tissue_source, **overrides)},
        )

    def handoff(self, din: str, *, by: str = "clinic", to: str = "tech", seal: str = "SEAL-1", **extra: Any):
        body = {"scanned_din": din, "to_username": to, "seal_id": seal, "temperature_c": 6} | extra
        return self.post(by, f"/batches/{din}/custody/handoff", body)

    def receive(
        self,
        din: str,
        *,
        by: str = "tech",
        seal: str = "SEAL-1",
        temperature_c: float = 6,
        condition: str = "intact",
        **extra: Any,
    ):
        body = {"scanned_din": din, "seal_id": seal, "temperature_c": temperature_c, "condition": condition} | extra
        return self.post(by, f"/batches/{din}/custody/receipt", body)

    def step(self, din: str, step: str, *, by: str = "tech", **body: Any):
        return self.post(by, f"/batches/{din}/steps", {"step": step, "scanned_din": din} | LAB_STEPS[step] | body)

    @remembered
    def at_lab(self, tissue_source: str = "adipose") -> str:
        """A batch harvested, handed to the lab and received by ``tech``."""
        return self.bring_in(self.batch(tissue_source), tissue_source)

    def bring_in(self, din: str, tissue_source: str = "adipose") -> str:
        """Harvest the registered batch ``din``, hand it to the lab and receive it as ``tech``."""
        self.ok(self.harvest(din, tissue_source))
        self.ok(self.handoff(din))
        self.ok(self.receive(din))
        return din

    @remembered
    def processed(self, tissue_source: str = "adipose") -> str:
        return self.process(self.at_lab(tissue_source), tissue_source)

    def process(self, din: str, tissue_source: str = "adipose") -> str:
        """Every processing step of ``din``, received at the lab, in order."""
        for name in PROCESS_ORDER[tissue_source]:
            self.ok(self.step(din, name))
        return din

    def qc(self, din: str, test: str, value: Any, *, by: str = "tech", **extra: Any):
        return self.post(by, f"/batches/{din}/qc", {"scanned_din": din, "test": test, "value": value} | extra)

    def verify(self, din: str, qc_id: int, *, by: str = "tech2", password: str = PASSWORD):
        return self.post(by, f"/batches/{din}/qc/{qc_id}/verify", {"signature": signature("verified", password)})

    def release(self, din: str, *, by: str = "qa", password: str = PASSWORD):
        return self.post(by, f"/batches/{din}/release", {"signature": signature("approved", password)})

    @remembered
    def awaiting_release(self, tissue_source: str = "adipose", results: dict[str, Any] | None = None) -> str:
        """A processed batch with every required QC result entered by tech and verified by tech2."""
        return self.pass_qc(self.processed(tissue_source), tissue_source, results)

    def pass_qc(self, din: str, tissue_source: str = "adipose", results: dict[str, Any] | None = None) -> str:
        """Every required QC result of the processed ``din`` entered by tech and verified by tech2."""
        for test, value in (GOOD_RESULTS[tissue_source] | (results or {})).items():
            entered = self.ok(self.qc(din, test, value))
            self.ok(self.verify(din, entered["id"]), 200)
        return din

    @remembered
    def released(self, tissue_source: str = "adipose") -> str:
        din = self.awaiting_release(tissue_source)
        self.ok(self.release(din), 200)
        return din

    @remembered
    def delivered(self, tissue_source: str = "adipose") -> str:
        """Released, dispatched by tech to the clinic user and received at the clinic."""
        return self.deliver(self.released(tissue_source))

    def deliver(self, din: str) -> str:
        """The released ``din`` dispatched by tech to the clinic user and received at the clinic."""
        self.ok(self.handoff(din, by="tech", to="clinic", seal="SEAL-2"))
        self.ok(self.receive(din, by="clinic", seal="SEAL-2"))
        return din

    def administration(self, din: str, *, by: str = "clinic", **overrides: Any):
        data = {
            "patient_mrn": "MRN-1",
            "patient_birth_date": "1980-05-17",
            "volume_ml": 6,
            "injection_sites": ["frontal scalp", "vertex"],
            "physician": "Dr. Ines Marlow",
        } | overrides
        return self.post(by, f"/batches/{din}/steps", {"step": "administration", "scanned_din": din, "data": data})

    def lot(self, key: str) -> int:
        return self.lots[key]

    def sql(self, statement: str, **params: Any) -> list:
        with self.db.engine.begin() as connection:
            result = connection.execute(text(statement), params)
            return list(result) if result.returns_rows else []


LAB_STEPS: dict[str, dict[str, Any]] = {
    "digestion": {"data": {"duration_min": 45, "temperature_c": 37}, "reagent_lots": [1], "equipment": ["INC-1"]},
    "isolation": {"data": {"g_force": 400, "duration_min": 10}, "equipment": ["CEN-1"]},
    "separation": {"data": {"duration_min": 15}, "reagent_lots": [2], "equipment": ["CEN-1"]},
    "concentration": {"data": {"final_volume_ml": 8}, "equipment": ["CEN-1"]},
}
GOOD_RESULTS: dict[str, dict[str, Any]] = {
    "adipose": {
        "viability_pct": 88,
        "tnc_total": 4.2e7,
        "gram_stain": "no_organisms_seen",
        "endotoxin_eu_per_ml": 0.5,
        "sterility_culture": "pending",
        "cd34_pct": 3.1,
    },
    "bone_marrow": {
        "viability_pct": 92,
        "tnc_total": 1.5e9,
        "gram_stain": "no_organisms_seen",
        "endotoxin_eu_per_ml": 0.5,
        "sterility_culture": "pending",
        "cd34_pct": 1.2,
    },
}


# What the offline verifier must run without: the app's own stack.
APP_STACK = ("sqlalchemy", "flask", "celery", "marshmallow", "werkzeug", "psycopg", "alembic", "kombu")


def unimportable(directory: Path, names: tuple[str, ...] = APP_STACK) -> Path:
    """A folder to put first on PYTHONPATH in which importing any of ``names`` raises ImportError."""
    for name in names:
        package = directory / "unimportable" / name
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(f"raise ImportError('{name} is not to be imported here')\n")
    return directory / "unimportable"


def signature(meaning: str, password: str = PASSWORD) -> dict[str, str]:
    return {"password": password, "meaning": meaning}


PROCESS_ORDER = {"adipose": ("digestion", "isolation", "concentration"), "bone_marrow": ("separation", "concentration")}
