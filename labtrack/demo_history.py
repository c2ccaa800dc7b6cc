"""A year of demo history: released and administered batches with their follow-up visits.

Called by ``labtrack.demo.load`` inside its transaction. Every batch goes through the
same services as a real one, with the server's clock set to the moment each step
happened (``labtrack.clock.frozen_at``), so events, signatures and follow-up windows are
dated as they would have been. The outcomes report and the trend charts then have
something real to show, including one Nelson flag (a viability far below the others, at least).

The history is signed by three former staff, deactivated at the end. Their password
hashes are made at a low Argon2 cost: a year of signatures (seven per batch) at the
production cost would take minutes to load; the accounts cannot sign in afterwards.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labtrack.clock import frozen_at, utcnow
from labtrack.domain.followup import BASELINE, VisitStatus
from labtrack.domain.operations import OutboxStatus
from labtrack.models import Equipment, FollowUpVisit, OutboxMessage, ReagentLot
from labtrack.services import batches, custody, followups, patients, qc, reference, release, steps
from labtrack.services.auth import actor_of

DAYS = 420  # a year and two months: the first patients have had their 12-month visit
SEED = 15
FORMER_STAFF = (
    ("h.okoro", "Helen Okoro", "technician"),
    ("h.lind", "Hugo Lind", "technician"),
    ("h.qa", "Hanna Quist", "qa"),
)
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024)
FAMILY = ("Adeyemi", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haas", "Ito", "Jensen", "Kowalski")
GIVEN = ("Alex", "Bea", "Chris", "Dana", "Eli", "Fran", "Gil", "Hal", "Ivo", "Jo", "Kim", "Lou", "Max", "Noor")
FLAGGED_INDEX = 26  # this adipose batch's viability is far below the others': Nelson rule 1


def load(session: Session, facility: str, password: str) -> int:
    """Replay a year of batches and follow-ups; returns how many batches it made."""
    rng = random.Random(SEED)
    system = reference.system_actor("demo-data")
    staff = {}
    for username, name, role in FORMER_STAFF:
        user = reference.create_user(
            session, system, username=username, full_name=name, role=role, password=password, clinic=None
        )
        user.password_hash = CHEAP.hash(password)  # see the module's note
        staff[username] = actor_of(user)
    clinic = actor_of(reference.user_by_username(session, "clinic"))
    collagenase = session.execute(select(ReagentLot).where(ReagentLot.lot_number == "CG-2611")).scalar_one()
    kit = session.execute(select(ReagentLot).where(ReagentLot.lot_number == "SK-0419")).scalar_one()
    assert session.execute(select(Equipment.id).where(Equipment.code == "CEN-01")).first()
    start = utcnow().date() - timedelta(days=DAYS)
    made = 0
    schedule = [("adipose", day) for day in range(0, DAYS - 14, 14)] + [
        ("bone_marrow", day) for day in range(5, DAYS - 14, 45)
    ]
    counts = {"adipose": 0, "bone_marrow": 0}
    for source, day in sorted(schedule, key=lambda item: item[1]):
        index = counts[source]
        counts[source] += 1
        journey = _Journey(session, facility, password, staff, clinic, rng, source, index)
        journey.run(start + timedelta(days=day), collagenase.id if source == "adipose" else kit.id)
        made += 1
    for username, _name, _role in FORMER_STAFF:
        reference.update_user(session, system, username, active=False)
    # The replayed history's notifications were delivered at the time; only today's are news.
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.created_at < utcnow() - timedelta(days=1))
        .values(
            status=OutboxStatus.DELIVERED.value,
            delivered_at=OutboxMessage.created_at,
            notified_at=OutboxMessage.created_at,
        )
    )
    return made


class _Journey:
    """One patient's batch, harvest to follow-up, each step at its own moment."""

    def __init__(self, session, facility, password, staff, clinic, rng, source, index) -> None:
        self.session, self.facility, self.password = session, facility, password
        self.tech, self.tech2, self.qa = staff["h.okoro"], staff["h.lind"], staff["h.qa"]
        self.clinic, self.rng, self.source, self.index = clinic, rng, source, index

    def at(self, day: date, hour: float) -> datetime:
        return datetime.combine(day, time(0), UTC) + timedelta(hours=hour)

    def run(self, day: date, lot_id: int) -> None:
        s, rng, source = self.session, self.rng, self.source
        with frozen_at(self.at(day, 8)):
            patient = patients.register(
                s,
                self.clinic,
                mrn=f"MRN-H{day:%y%m%d}{source[0].upper()}",
                family_name=rng.choice(FAMILY),
                given_name=rng.choice(GIVEN),
                birth_date=date(rng.randint(1960, 1995), rng.randint(1, 12), rng.randint(1, 28)),
            )
            din = batches.register(
                s, self.clinic, facility=self.facility, patient_id=patient.id, tissue_source=source
            ).din
        volume = rng.uniform(100, 220) if source == "adipose" else rng.uniform(50, 70)
        with frozen_at(self.at(day, 9.5)):
            data = {
                "patient_mrn": patient.mrn,
                "patient_birth_date": patient.birth_date.isoformat(),
                "weight_kg": round(rng.uniform(60, 95), 1),
                "volume_ml": round(volume, 1),
                "site": "abdomen" if source == "adipose" else "posterior_iliac_crest",
                "started_at": self.at(day, 8.6).isoformat(),
                "ended_at": self.at(day, 9.3).isoformat(),
            }
            if source == "bone_marrow":
                data["anticoagulant"] = "heparin"
            steps.log_step(s, self.clinic, din, step="harvest", scanned_din=din, data=data)
        seal = f"H-{din[-6:]}"
        with frozen_at(self.at(day, 9.7)):
            custody.handoff(s, self.clinic, din, scanned_din=din, to_username="h.okoro", seal_id=seal, temperature_c=8)
        with frozen_at(self.at(day, 10.2)):
            custody.receipt(s, self.tech, din, scanned_din=din, seal_id=seal, temperature_c=9, condition="intact")
        lab_steps = (
            [
                ("digestion", {"duration_min": 45, "temperature_c": 37}, [lot_id], ["INC-01"]),
                ("isolation", {"g_force": 400, "duration_min": 10}, [], ["CEN-01"]),
                ("concentration", {"final_volume_ml": 8}, [], ["CEN-01"]),
            ]
            if source == "adipose"
            else [
                ("separation", {"duration_min": 15}, [lot_id], ["CEN-01"]),
                ("concentration", {"final_volume_ml": 8}, [], ["CEN-01"]),
            ]
        )
        for offset, (name, values, lots, equipment) in enumerate(lab_steps):
            with frozen_at(self.at(day, 10.5 + offset)):
                steps.log_step(
                    s, self.tech, din, step=name, scanned_din=din, data=values, reagent_lots=lots, equipment=equipment
                )
        results = self.results(volume)
        with frozen_at(self.at(day, 13.5)):
            for test, value in results.items():
                entered = qc.record(s, self.tech, din, scanned_din=din, test=test, value=value)
                qc.verify(s, self.tech2, din, entered.id, signature={"password": self.password, "meaning": "verified"})
        with frozen_at(self.at(day, 14)):
            release.release(s, self.qa, din, signature={"password": self.password, "meaning": "approved"})
        with frozen_at(self.at(day, 14.3)):
            custody.handoff(
                s, self.tech, din, scanned_din=din, to_username="clinic", seal_id=seal + "D", temperature_c=6
            )
        with frozen_at(self.at(day, 15)):
            custody.receipt(
                s, self.clinic, din, scanned_din=din, seal_id=seal + "D", temperature_c=7, condition="intact"
            )
        with frozen_at(self.at(day, 15.5)):
            admin_data = {
                "patient_mrn": patient.mrn,
                "patient_birth_date": patient.birth_date.isoformat(),
                "volume_ml": 6,
                "injection_sites": ["frontal scalp", "vertex"],
                "physician": "Dr. Ines Marlow",
            }
            steps.log_step(s, self.clinic, din, step="administration", scanned_din=din, data=admin_data)
        self.follow_ups(din, day, results)

    def results(self, volume: float) -> dict:
        rng, adipose = self.rng, self.source == "adipose"
        viability = min(97.0, max(80.0, rng.gauss(89.0, 1.6)))
        if adipose and self.index == FLAGGED_INDEX:
            viability = 79.5  # well inside the specification (≥ 70 %), far outside the process's 3 σ
        tnc = rng.gauss(2.6e5, 0.4e5) * volume if adipose else rng.gauss(2.4e7, 0.3e7) * volume
        return {
            "viability_pct": round(viability, 1),
            "tnc_total": round(max(tnc, 2.0e7 if adipose else 1.2e9), -4),
            "gram_stain": "no_organisms_seen",
            "endotoxin_eu_per_ml": round(min(0.9, max(0.05, rng.gauss(0.35, 0.08))), 2),
            "sterility_culture": "pending",
            "cd34_pct": round(rng.uniform(1.0, 4.0), 1),
        }

    def follow_ups(self, din: str, day: date, results: dict) -> None:
        s, rng, today = self.session, self.rng, utcnow().date()
        viable = results["tnc_total"] * results["viability_pct"] / 100
        typical = 3.6e7 if self.source == "adipose" else 1.3e9
        baseline = rng.gauss(112, 14)
        gains = {"m3": 0.04, "m6": 0.10 + 0.08 * (viable / typical - 1), "m12": 0.13 + 0.06 * (viable / typical - 1)}
        visits = {
            v.visit: v for v in s.execute(select(FollowUpVisit).where(FollowUpVisit.batch.has(din=din))).scalars()
        }
        for name, visit in sorted(visits.items(), key=lambda item: item[1].due_on):
            if visit.status != VisitStatus.DUE.value:
                continue
            if name == BASELINE:
                measured, density = day, baseline
            else:
                measured = visit.due_on + timedelta(days=rng.randint(-10, 10))
                density = baseline * (1 + gains.get(name, 0.1) + rng.gauss(0, 0.03))
                if measured >= today or rng.random() < 0.08:  # not yet, or missed
                    continue
            with frozen_at(self.at(measured, 16 if name == BASELINE else 11)):
                followups.record(
                    s,
                    self.clinic,
                    din,
                    name,
                    measured_on=measured,
                    hair_density_per_cm2=round(max(density, 1.0), 1),
                    hair_shaft_diameter_um=round(rng.gauss(62, 6), 1),
                    patient_global_assessment=0 if name == BASELINE else rng.choice((0, 1, 1, 2)),
                    investigator_global_assessment=0 if name == BASELINE else rng.choice((0, 1, 1, 2)),
                    adverse_reaction=name != BASELINE and rng.random() < 0.03,
                )
