"""QA's review queue: every kind of work waiting for QA, each with what this QA user may do about it.

Results to verify, deviations to dispose, batches awaiting release, held batches, recent identity
near-misses and specification proposals. Who may act is said by ``labtrack.domain.decisions`` (and, for
proposals, ``labtrack.domain.specifications``), never decided here.
"""

from __future__ import annotations

from flask import render_template

from labtrack.db import read_session
from labtrack.domain.actors import Role
from labtrack.domain.deviations import DeviationStatus
from labtrack.services import batches, decisions, deviations, identity, qc, specifications
from labtrack.web import bp
from labtrack.web.auth import actor, roles

QUEUE_SIZE = 100


@bp.get("/qa")
@roles(Role.QA)
def qa_queue():
    session, who = read_session(), actor()
    awaiting = batches.search(session, who, batches.BatchFilter(status="awaiting_release"), limit=QUEUE_SIZE).items
    held = batches.search(session, who, batches.BatchFilter(held=True), limit=QUEUE_SIZE).items
    proposals = specifications.proposals(session, who, status="proposed")
    return render_template(
        "qa.html",
        to_verify=qc.awaiting_verification(session, who, QUEUE_SIZE),
        awaiting=awaiting,
        took_part=decisions.took_part_in(session, who, [b.id for b in awaiting]),
        held=held,
        open_deviations=deviations.search(session, who, status=DeviationStatus.OPEN, limit=QUEUE_SIZE).items,
        mismatches=identity.recent_mismatches(session, who),
        proposals=[(p, {d.action: d for d in specifications.decisions_for(session, who, p)}) for p in proposals],
    )
