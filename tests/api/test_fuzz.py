"""API fuzzing (issue 8): schemathesis drives every operation of the app's own OpenAPI document.

The document is read from /api/openapi.json and the requests go straight into the Flask app
(WSGI, no server), signed in as each role in turn, against a database holding real batches in
several states. Path parameters are often swapped for real DINs and ids (and a body's
``scanned_din`` for the batch's own DIN), so requests get past "not found" into the rules.

Every response must: not be a 5xx; carry a status code the document names for the operation;
have the documented content type (problem+json for refusals); match the documented schema.
Invalid input (schemathesis' negative mode) must be refused.

``LABTRACK_FUZZ_EXAMPLES`` sets the examples (requests) per operation and role (default 20); a larger
number digs deeper, e.g. ``LABTRACK_FUZZ_EXAMPLES=200 pytest tests/api/test_fuzz.py`` before a release.
A failure prints the request as a curl command; ``--hypothesis-seed=N`` replays a run.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from labtrack import jobs
from labtrack.services import auth, outbox, reference
from tests.api.test_access_matrix import PHOTO
from tests.conftest import fresh_database, make_app
from tests.helpers import PASSWORD, USERS, Lab
from tests.investigation_support import investigated
from tests.outcome_support import administered

EXAMPLES = int(os.environ.get("LABTRACK_FUZZ_EXAMPLES", "20"))
SIGNED_IN_AS = ("admin", "tech", "qa", "clinic")  # one user of each role (tests/helpers.py)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
REVOKE = "/api/v1/auth/revoke"


def real_values(lab: Lab) -> dict[str, list[Any]]:
    """Batches in several states (C1's and one of C2's), QC results, a deviation, notifications, a specification
    proposal and a full verification run."""
    awaiting = lab.awaiting_release()
    batch = lab.ok(lab.get("qa", f"/batches/{awaiting}"), 200)
    more = [
        lab.ok(lab.post("clinic", "/batches", {"patient_id": batch["patient"]["id"], "tissue_source": tissue}))["din"]
        for tissue in ("bone_marrow", "adipose")
    ]
    registered, at_lab = more
    lab.ok(lab.harvest(at_lab))
    lab.ok(lab.handoff(at_lab))
    lab.ok(lab.receive(at_lab))
    theirs = lab.patient("MRN-O", by="other")
    elsewhere = lab.ok(lab.post("other", "/batches", {"patient_id": theirs["id"], "tissue_source": "adipose"}))["din"]
    deviation = lab.ok(lab.post("tech", f"/batches/{at_lab}/deviations", {"description": "seal looked loose"}))
    qc_ids = [result["id"] for result in batch["qc"]]
    followed = administered(lab, "MRN-F")
    photo = lab.client.post(
        f"/api/v1/batches/{followed}/attachments",
        data={"file": (io.BytesIO(PHOTO), "p.png")},
        headers=lab.headers("clinic"),
        content_type="multipart/form-data",
    )
    investigated_din, reaction_id, lookback_id = investigated(lab, batch["patient"]["id"])
    adipose = lab.ok(lab.get("qa", "/specifications/adipose/versions"), 200)[0]["body"]
    proposal = lab.ok(lab.post("qa", "/specifications/adipose/proposals", {"body": adipose, "reason": "fuzzing"}))
    run = lab.ok(lab.post("qa", "/audit/verifications", {}), 202)
    jobs.dispatch(lab.db, outbox.Settings.of(lab.app.config))  # the in-app notifications of all that
    return {
        "din": [registered, at_lab, awaiting, elsewhere, followed, investigated_din],
        "qc_id": qc_ids,
        "deviation_id": [deviation["id"]],
        "lot_id": list(lab.lots.values()),
        "code": ["INC-1", "CEN-1", "CEN-OUT"],
        "username": [name for name in USERS if name != "admin"],  # the admin never locks itself out of the run
        "tissue_source": ["adipose", "bone_marrow"],
        "leg": [1, 2],  # transport legs (R-TMP-1): the first is received, the second does not exist
        "notification_id": [row[0] for row in lab.sql("SELECT id FROM notifications")],  # some are others'
        "visit": ["baseline", "m3", "m6", "m12"],
        "metric": ["viability_pct", "tnc_per_ml_harvested", "endotoxin_eu_per_ml"],
        "version": [1, 2],
        "attachment_id": [lab.ok(photo)["id"]],
        "reaction_id": [reaction_id],
        "lookback_id": [lookback_id],
        "proposal_id": [proposal["id"]],
        "run_id": [run["id"]],
    }


def fresh_token(lab: Lab, username: str) -> str:
    token, _, _ = lab.db.write(lambda session: auth.issue_token(session, username, PASSWORD, timedelta(hours=1)))
    return token


@dataclass
class Fuzzing:
    """The app under test, signed in as one user, with the real values worth trying."""

    lab: Lab
    username: str
    values: dict[str, list[Any]]

    def ground(self, case: schemathesis.Case, data: st.DataObject) -> None:
        """Often swap in real path parameters, scan the batch's own DIN and sign with the right password."""
        for name in list(case.path_parameters or {}):
            if self.values.get(name) and data.draw(st.booleans(), label=f"real {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(self.values[name]), label=name)
        if not isinstance(case.body, dict):
            return
        din = (case.path_parameters or {}).get("din")
        if din and "scanned_din" in case.body and data.draw(st.booleans(), label="scan the batch"):
            case.body["scanned_din"] = din
        signature = case.body.get("signature")
        if isinstance(signature, dict) and "password" in signature and data.draw(st.booleans(), label="sign"):
            signature["password"] = PASSWORD

    def token(self, case: schemathesis.Case) -> str:
        if case.operation.path == REVOKE:  # revocation ends the token it is called with: it gets one of its own
            return fresh_token(self.lab, self.username)
        return self.lab.headers(self.username)["Authorization"].removeprefix("Bearer ")

    def unlock(self) -> None:
        """Wrong signature passwords lock the account (R-SIG-1); unlocked, the run goes on past the 423."""
        system = reference.system_actor("fuzzing")
        self.lab.db.write(lambda session: reference.update_user(session, system, self.username, unlock=True))


def openapi_document() -> dict[str, Any]:
    """The document as the app serves it; it does not depend on the database, so a bare app will do."""
    with tempfile.TemporaryDirectory() as directory:
        return make_app("sqlite://", Path(directory)).test_client().get("/api/openapi.json").get_json()


schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(max_examples=EXAMPLES)
schema.config.phases.update(phases=["examples", "fuzzing"])


@schema.auth(refresh_interval=None)
class SignedIn:
    """The bearer token of the user the ``fuzzing`` fixture has signed in (one user at a time).

    Given to schemathesis as its auth provider, so that its negative cases may leave the token out.
    """

    fuzzing: Fuzzing | None = None

    def get(self, case: schemathesis.Case, _context: schemathesis.AuthContext) -> str:
        assert SignedIn.fuzzing is not None, "the fuzzing fixture signs a user in"
        return SignedIn.fuzzing.token(case)

    def set(self, case: schemathesis.Case, token: str, _context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module", params=SIGNED_IN_AS)
def fuzzing(request: pytest.FixtureRequest, _template: str, tmp_path_factory: pytest.TempPathFactory):
    """One database per signed-in user, shared by every operation's fuzzing."""
    directory = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    app = make_app(fresh_database(_template, directory), directory)
    lab = Lab.build(app, app.test_client())
    SignedIn.fuzzing = Fuzzing(lab, request.param, real_values(lab))
    yield SignedIn.fuzzing
    SignedIn.fuzzing = None
    lab.db.dispose()


@schema.parametrize()
@schema.given(data=st.data())
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_answers_as_documented(case, data, fuzzing):
    fuzzing.ground(case, data)
    response = case.call_and_validate(app=fuzzing.lab.app, checks=CHECKS)
    if response.status_code == 423:
        fuzzing.unlock()
