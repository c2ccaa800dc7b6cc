"""R-ACC-1: the SQL of every list (``services/scope.visible``) keeps exactly the rows ``sees_clinic`` allows."""

from __future__ import annotations

from sqlalchemy import select

from labtrack.domain.actors import sees_clinic
from labtrack.models import Batch, Deviation, Patient, User
from labtrack.services import scope
from labtrack.services.auth import actor_of


def test_r_acc_1_a_scoped_query_keeps_the_rows_of_the_clinics_the_actor_sees(lab, db):
    own = lab.batch(mrn="MRN-1")
    other_patient = lab.patient("MRN-9", by="other")
    theirs = lab.ok(lab.post("other", "/batches", {"patient_id": other_patient["id"], "tissue_source": "adipose"}))
    for din in (own, theirs["din"]):
        lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": "Label smudged."}))

    def check(session) -> None:
        actors = [actor_of(user) for user in session.execute(select(User)).scalars()]
        every_batch = session.execute(select(Batch.din, Batch.clinic_id)).all()
        every_patient = session.execute(select(Patient.mrn, Patient.clinic_id)).all()
        assert len(every_batch) == len(every_patient) == 2
        for actor in actors:
            seen = {din for din, clinic_id in every_batch if sees_clinic(actor, clinic_id)}
            batches = scope.visible(select(Batch.din), actor, Batch.clinic_id)
            assert set(session.execute(batches).scalars()) == seen, actor.username
            deviations = scope.visible(select(Deviation.id, Deviation.batch_id), actor, Batch.clinic_id, join=Batch)
            assert len(session.execute(deviations).all()) == len(seen), actor.username  # a join that repeats nothing
            patients = scope.visible(select(Patient.mrn), actor, Patient.clinic_id)
            expected = {mrn for mrn, clinic_id in every_patient if sees_clinic(actor, clinic_id)}
            assert set(session.execute(patients).scalars()) == expected, actor.username
        assert {actor.username for actor in actors} >= {"clinic", "other", "tech", "qa", "admin"}

    db.write(check)
