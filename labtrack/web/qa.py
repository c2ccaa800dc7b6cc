"""QA's review queue: what awaits release, what is held, open deviations, recent identity near-misses."""

from __future__ import annotations

from flask import render_template

from labtrack.api.common import read_session
from labtrack.domain.actors import Role
from labtrack.services import batches, deviations, identity
from labtrack.web import bp
from labtrack.web.auth import actor, roles

QUEUE_SIZE = 100


@bp.get("/qa")
@roles(Role.QA)
def qa_queue():
    session, who = read_session(), actor()
    awaiting = batches.search(session, who, batches.BatchFilter(status="awaiting_release"), limit=QUEUE_SIZE).items
    held = batches.search(session, who, batches.BatchFilter(held=True), limit=QUEUE_SIZE).items
    return render_template(
        "qa.html",
        awaiting=awaiting,
        held=held,
        open_deviations=deviations.search(session, who, status="open", limit=QUEUE_SIZE).items,
        mismatches=identity.recent_mismatches(session, who),
    )
