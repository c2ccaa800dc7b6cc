"""Demo investigations (issue 14): an administered batch with a closed adverse reaction, and the recall of
its collagenase lot, whose lookback is open and awaits the clinic's acknowledgement.

Its own lot (``CG-2609``) and patient, so the other demo batches are untouched; the README walks
through recalling ``CG-2611``, the lot of the released demo batch, by hand.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from labtrack.clock import utcnow
from labtrack.services import adverse_reactions, custody, lookbacks, patients, reference, steps

if TYPE_CHECKING:
    from labtrack.demo import DemoLab

LOT = "CG-2609"
PATIENT = ("MRN-1006", "Sato", "Ken", date(1981, 6, 30))


def add(demo: DemoLab) -> None:
    """One batch from harvest to administration on lot CG-2609, a reaction reported and closed, the lot recalled."""
    session, people = demo.session, demo.people
    signature = {"password": "labtrack-demo", "meaning": "reviewed"}
    lot = reference.create_lot(
        session,
        people["admin"],
        kind="collagenase",
        name="Collagenase NB 6 GMP",
        lot_number=LOT,
        expires_on=date.today() + timedelta(days=150),
        status="released",
    )
    mrn, family, given, born = PATIENT
    ken = patients.register(session, people["clinic"], mrn=mrn, family_name=family, given_name=given, birth_date=born)
    din = demo.new_batch(ken, "adipose")
    demo.harvest(din, ken, "adipose")
    demo.to_lab(din)
    demo.receive(din)
    demo.lab(din, "digestion", {"duration_min": 45, "temperature_c": 37}, [lot.id], ["INC-01"])
    demo.lab(din, "isolation", {"g_force": 400, "duration_min": 10}, (), ["CEN-01"])
    demo.lab(din, "concentration", {"final_volume_ml": 8}, (), ["CEN-01"])
    demo.release_with_sterility_pending(din)
    seal = f"D-{din[-4:]}"
    custody.handoff(session, people["tech"], din, scanned_din=din, to_username="clinic", seal_id=seal, temperature_c=6)
    custody.receipt(session, people["clinic"], din, scanned_din=din, seal_id=seal, temperature_c=7, condition="intact")
    administered = {
        "patient_mrn": mrn,
        "patient_birth_date": born.isoformat(),
        "volume_ml": 6,
        "injection_sites": ["frontal scalp", "vertex"],
        "physician": "Dr. Ines Marlow",
    }
    steps.log_step(session, people["clinic"], din, step="administration", scanned_din=din, data=administered)
    reaction = adverse_reactions.report(
        session,
        people["clinic"],
        din,
        onset_at=utcnow(),
        category="injection_site_reaction",
        description="Redness and swelling at the vertex injection sites the evening after; cold packs.",
        outcome="recovered",
        fatal=False,
        life_threatening=False,
        permanent_impairment=False,
        intervention_required=False,
        communicable_disease_suspected=False,
        zone="UTC",
    )
    adverse_reactions.close(
        session,
        people["qa"],
        reaction.id,
        conclusion="Expected local reaction to the injections; resolved in two days.",
        related_to_product="yes",
        signature=signature,
        zone="UTC",
    )
    lookbacks.recall_lot(session, people["admin"], lot.id, reason="Supplier notice: endotoxin above limit in CG-2609")
