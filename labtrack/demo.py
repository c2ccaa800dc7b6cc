"""Demo data for a first look: one clinic, a user per role, materials, batches in several states.

Loaded through the same services as every other write, in one transaction, so it
is either all there or not at all; running it again changes nothing.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack import demo_history
from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.models import Clinic
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


def load(database: Database, facility: str) -> str:
    def work(session: Session) -> str:
        if session.execute(select(Clinic.id).where(Clinic.code == CLINIC)).first():
            return "Demo data already loaded; nothing changed."
        specifications.seed_defaults(session)
        system = reference.system_actor("demo-data")
        reference.create_clinic(session, system, code=CLINIC, name="Riverside Hair Clinic")
        people = {
            username: actor_of(
                reference.create_user(
                    session,
                    system,
                    username=username,
                    full_name=name,
                    role=role,
                    password=DEMO_PASSWORD,
                    clinic=clinic,
                )
            )
            for username, name, role, clinic in USERS
        }
        admin, tech, clinic_user = people["admin"], people["tech"], people["clinic"]
        today = date.today()
        collagenase = reference.create_lot(
            session,
            admin,
            kind="collagenase",
            name="Collagenase NB 6 GMP",
            lot_number="CG-2611",
            expires_on=today + timedelta(days=180),
            status="released",
        )
        kit = reference.create_lot(
            session,
            admin,
            kind="separation_kit",
            name="BMAC separation kit",
            lot_number="SK-0419",
            expires_on=today + timedelta(days=120),
            status="released",
        )
        reference.create_lot(
            session,
            admin,
            kind="collagenase",
            name="Collagenase NB 6 GMP",
            lot_number="CG-2612",
            expires_on=today + timedelta(days=200),
            status="quarantined",
        )
        reference.create_equipment(
            session,
            admin,
            code="INC-01",
            kind="incubator",
            name="Shaking incubator",
            calibration_due_on=today + timedelta(days=90),
            status="in_service",
        )
        reference.create_equipment(
            session,
            admin,
            code="CEN-01",
            kind="centrifuge",
            name="Benchtop centrifuge",
            calibration_due_on=today + timedelta(days=60),
            status="in_service",
        )
        reference.create_equipment(
            session,
            admin,
            code="CEN-02",
            kind="centrifuge",
            name="Old centrifuge",
            calibration_due_on=today - timedelta(days=3),
            status="in_service",
        )

        def patient(mrn: str, family: str, given: str, born: date):
            return patients.register(
                session, clinic_user, mrn=mrn, family_name=family, given_name=given, birth_date=born
            )

        def harvest(din: str, who, source: str) -> None:
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
            steps.log_step(session, clinic_user, din, step="harvest", scanned_din=din, data=data)

        def to_lab(din: str) -> None:
            custody.handoff(
                session, clinic_user, din, scanned_din=din, to_username="tech", seal_id=f"S-{din[-4:]}", temperature_c=8
            )

        def receive(din: str) -> None:
            custody.receipt(
                session, tech, din, scanned_din=din, seal_id=f"S-{din[-4:]}", temperature_c=9, condition="intact"
            )

        def lab(din: str, step: str, data: dict, lots=(), equipment=()) -> None:
            steps.log_step(
                session,
                tech,
                din,
                step=step,
                scanned_din=din,
                data=data,
                reagent_lots=list(lots),
                equipment=list(equipment),
            )

        ann = patient("MRN-1001", "Okafor", "Ann", date(1979, 4, 12))
        ben = patient("MRN-1002", "Lindqvist", "Ben", date(1968, 11, 3))
        cara = patient("MRN-1003", "Moreau", "Cara", date(1990, 2, 27))
        dev = patient("MRN-1004", "Haddad", "Dev", date(1985, 7, 19))
        eve = patient("MRN-1005", "Novak", "Eve", date(1972, 9, 8))

        def new_batch(who, source: str) -> str:
            return batches.register(
                session, clinic_user, facility=facility, patient_id=who.id, tissue_source=source
            ).din

        new_batch(ann, "adipose")  # registered, awaiting harvest
        in_transit = new_batch(ben, "bone_marrow")
        harvest(in_transit, ben, "bone_marrow")
        to_lab(in_transit)

        def processed_svf(who) -> str:
            din = new_batch(who, "adipose")
            harvest(din, who, "adipose")
            to_lab(din)
            receive(din)
            lab(din, "digestion", {"duration_min": 45, "temperature_c": 37}, [collagenase.id], ["INC-01"])
            lab(din, "isolation", {"g_force": 400, "duration_min": 10}, (), ["CEN-01"])
            lab(din, "concentration", {"final_volume_ml": 8}, (), ["CEN-01"])
            return din

        processed_svf(cara)
        processing = new_batch(dev, "bone_marrow")
        harvest(processing, dev, "bone_marrow")
        to_lab(processing)
        receive(processing)
        lab(processing, "separation", {"duration_min": 15}, [kit.id], ["CEN-01"])
        released = processed_svf(eve)  # then released with sterility pending: prints a product label
        for test, value in RELEASE_RESULTS.items():
            result = qc.record(session, tech, released, scanned_din=released, test=test, value=value)
            qc.verify(
                session,
                people["tech2"],
                released,
                result.id,
                signature={"password": DEMO_PASSWORD, "meaning": "verified"},
            )
        release.release(session, people["qa"], released, signature={"password": DEMO_PASSWORD, "meaning": "approved"})
        history = demo_history.load(session, facility, DEMO_PASSWORD)  # a year of follow-up and trends
        return f"Demo data loaded: clinic {CLINIC}, 5 users, 5 batches today and {history} over the past year."

    return database.write(work)
