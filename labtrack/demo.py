"""Demo data for a first look: one clinic, a user per role, materials, batches in several states.

Loaded through the same services as every other write, in one transaction, so it
is either all there or not at all; running it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack import demo_history, demo_investigations
from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.domain.actors import Actor
from labtrack.models import Clinic, Patient, ReagentLot
from labtrack.services import batches, custody, patients, qc, reference, release, specifications, steps
from labtrack.services.auth import actor_of

DEMO_PASSWORD = "labtrack-demo"
CLINIC = "RHC"
RELEASE_RESULTS = {
    "viability_pct": 91,
    "tnc_total": 3.6e7,
    "gram_stain": "no_organisms_seen",
    "endotoxin_eu_per_ml": 0.4,
    "sterility_culture": "pending",
    "cd34_pct": 2.8,
}
USERS = (
    ("admin", "Ada Admin", "admin", None),
    ("tech", "Tomas Bench", "technician", None),
    ("tech2", "Tara Second", "technician", None),
    ("qa", "Quinn Assurance", "qa", None),
    ("clinic", "Clara Clinic", "clinic", CLINIC),
)
LOTS = (  # lot number, kind, name, days to expiry, status
    ("CG-2611", "collagenase", "Collagenase NB 6 GMP", 180, "released"),
    ("SK-0419", "separation_kit", "BMAC separation kit", 120, "released"),
    ("CG-2612", "collagenase", "Collagenase NB 6 GMP", 200, "quarantined"),
)
EQUIPMENT = (  # code, kind, name, days to calibration due (negative: overdue)
    ("INC-01", "incubator", "Shaking incubator", 90),
    ("CEN-01", "centrifuge", "Benchtop centrifuge", 60),
    ("CEN-02", "centrifuge", "Old centrifuge", -3),
)
PATIENTS = (
    ("MRN-1001", "Okafor", "Ann", date(1979, 4, 12)),
    ("MRN-1002", "Lindqvist", "Ben", date(1968, 11, 3)),
    ("MRN-1003", "Moreau", "Cara", date(1990, 2, 27)),
    ("MRN-1004", "Haddad", "Dev", date(1985, 7, 19)),
    ("MRN-1005", "Novak", "Eve", date(1972, 9, 8)),
)


def load(database: Database, facility: str) -> str:
    """Load the demo data in one transaction, unless it is there already; say what was done."""

    def work(session: Session) -> str:
        if session.execute(select(Clinic.id).where(Clinic.code == CLINIC)).first():
            return "Demo data already loaded; nothing changed."
        specifications.seed_defaults(session)
        demo = DemoLab.open(session, facility)
        demo.add_materials()
        demo.add_batches()
        demo_investigations.add(demo)
        history = demo_history.load(session, facility, DEMO_PASSWORD)  # a year of follow-up and trends
        return (
            f"Demo data loaded: clinic {CLINIC}, 5 users, 5 batches today (one released), {history} over the past year."
        )

    return database.write(work)


@dataclass
class DemoLab:
    """The demo clinic and its people inside one unit of work, with the few moves the demo batches make."""

    session: Session
    facility: str
    people: dict[str, Actor]
    lots: dict[str, ReagentLot] = field(default_factory=dict)

    @classmethod
    def open(cls, session: Session, facility: str) -> DemoLab:
        """The demo clinic and one user per role of ``USERS``."""
        system = reference.system_actor("demo-data")
        reference.create_clinic(session, system, code=CLINIC, name="Riverside Hair Clinic")
        people = {
            username: actor_of(
                reference.create_user(
                    session, system, username=username, full_name=name, role=role, password=DEMO_PASSWORD, clinic=clinic
                )
            )
            for username, name, role, clinic in USERS
        }
        return cls(session, facility, people)

    def add_materials(self) -> None:
        """Two usable lots and a quarantined one; two usable pieces of equipment and one overdue for calibration."""
        today = date.today()
        for lot_number, kind, name, days, status in LOTS:
            self.lots[lot_number] = reference.create_lot(
                self.session,
                self.people["admin"],
                kind=kind,
                name=name,
                lot_number=lot_number,
                expires_on=today + timedelta(days=days),
                status=status,
            )
        for code, kind, name, days in EQUIPMENT:
            reference.create_equipment(
                self.session,
                self.people["admin"],
                code=code,
                kind=kind,
                name=name,
                calibration_due_on=today + timedelta(days=days),
                status="in_service",
            )

    def add_batches(self) -> None:
        """One batch per stage worth showing: registered, in transit, processed, processing, released."""
        ann, ben, cara, dev, eve = (self.patient(*row) for row in PATIENTS)
        self.new_batch(ann, "adipose")  # registered, awaiting harvest
        in_transit = self.new_batch(ben, "bone_marrow")
        self.harvest(in_transit, ben, "bone_marrow")
        self.to_lab(in_transit)
        self.processed_svf(cara)
        processing = self.new_batch(dev, "bone_marrow")
        self.harvest(processing, dev, "bone_marrow")
        self.to_lab(processing)
        self.receive(processing)
        self.lab(processing, "separation", {"duration_min": 15}, [self.lots["SK-0419"].id], ["CEN-01"])
        self.release_with_sterility_pending(self.processed_svf(eve))  # prints a product label

    def patient(self, mrn: str, family: str, given: str, born: date) -> Patient:
        return patients.register(
            self.session, self.people["clinic"], mrn=mrn, family_name=family, given_name=given, birth_date=born
        )

    def new_batch(self, who: Patient, source: str) -> str:
        return batches.register(
            self.session, self.people["clinic"], facility=self.facility, patient_id=who.id, tissue_source=source
        ).din

    def harvest(self, din: str, who: Patient, source: str) -> None:
        ended = utcnow() - timedelta(minutes=20)
        data = {
            "patient_mrn": who.mrn,
            "patient_birth_date": who.birth_date.isoformat(),
            "weight_kg": 78,
            "volume_ml": 120 if source == "adipose" else 60,
            "site": "abdomen" if source == "adipose" else "posterior_iliac_crest",
            "started_at": (ended - timedelta(minutes=45)).isoformat(),
            "ended_at": ended.isoformat(),
        }
        if source == "bone_marrow":
            data["anticoagulant"] = "heparin"
        steps.log_step(self.session, self.people["clinic"], din, step="harvest", scanned_din=din, data=data)

    def to_lab(self, din: str) -> None:
        custody.handoff(
            self.session,
            self.people["clinic"],
            din,
            scanned_din=din,
            to_username="tech",
            seal_id=f"S-{din[-4:]}",
            temperature_c=8,
        )

    def receive(self, din: str) -> None:
        custody.receipt(
            self.session,
            self.people["tech"],
            din,
            scanned_din=din,
            seal_id=f"S-{din[-4:]}",
            temperature_c=9,
            condition="intact",
        )

    def lab(self, din: str, step: str, data: dict, lots=(), equipment=()) -> None:
        steps.log_step(
            self.session,
            self.people["tech"],
            din,
            step=step,
            scanned_din=din,
            data=data,
            reagent_lots=list(lots),
            equipment=list(equipment),
        )

    def processed_svf(self, who: Patient) -> str:
        din = self.new_batch(who, "adipose")
        self.harvest(din, who, "adipose")
        self.to_lab(din)
        self.receive(din)
        collagenase = self.lots["CG-2611"].id
        self.lab(din, "digestion", {"duration_min": 45, "temperature_c": 37}, [collagenase], ["INC-01"])
        self.lab(din, "isolation", {"g_force": 400, "duration_min": 10}, (), ["CEN-01"])
        self.lab(din, "concentration", {"final_volume_ml": 8}, (), ["CEN-01"])
        return din

    def release_with_sterility_pending(self, din: str) -> None:
        for test, value in RELEASE_RESULTS.items():
            result = qc.record(self.session, self.people["tech"], din, scanned_din=din, test=test, value=value)
            qc.verify(
                self.session,
                self.people["tech2"],
                din,
                result.id,
                signature={"password": DEMO_PASSWORD, "meaning": "verified"},
            )
        release.release(
            self.session, self.people["qa"], din, signature={"password": DEMO_PASSWORD, "meaning": "approved"}
        )
