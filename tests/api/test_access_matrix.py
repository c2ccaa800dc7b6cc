"""The access matrices: every API operation and every web page, for every role (R-ACC-1..3).

One table per interface is the single source of who may do what (requirements §2 R-ACC-1..3,
the "who" column of §3, the page areas of §7). Each row is an operation as routed in
``app.url_map``, the outcome expected in each column, and the request sent. Columns:
anonymous, admin, technician, QA, a user of the batch's own clinic (C1) and a user of
another clinic (C2). Outcomes:

- ``401`` anonymous (API); ``login`` anonymous (pages): redirected to the sign-in page;
- ``403`` a role the operation is not for;
- ``2xx`` (``303`` for a form) allowed and done; ``409`` or ``422`` allowed, then refused by
  a domain rule (custody, release blockers), which proves authorisation passed;
- a trailing ``~`` (``404~``, ``422~``, ``403~``, ``200~``): the answer is exactly the
  answer to the same request about resources that do not exist (R-ACC-1: another
  clinic's batch, patient or notification is indistinguishable from none).

Every refused cell must write nothing: every row of every table is compared before
and after. Nothing the other clinic receives may name the first clinic's DINs or
patients' MRNs. A route without a row, or a row without a route, fails the
``..._has_a_row_for_every_...`` tests, so an operation added later cannot escape.

Each test builds one ``World`` and runs its columns over every row, then lists every
mismatching cell at once (a fresh world per cell would cost ~1 s each). Rows whose
allowed cells change a batch get a batch of their own, and requests allowed to two
roles differ per role (another QC test, another value), so no cell's outcome depends
on which columns ran before it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Column, LargeBinary, Table, select

from labtrack.models import Base, Batch, LabelPrint, Notification, OutboxMessage, User
from tests.helpers import GOOD_RESULTS, LAB_STEPS, PASSWORD, Lab, signature
from tests.investigation_support import investigated, reaction, reaction_form
from tests.outcome_support import administered

ROLES = ("anonymous", "admin", "tech", "qa", "clinic", "other")
ABSENT = 987_654  # an id no row has
PROBLEM_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}


@dataclass(frozen=True)
class Cell:
    status: int
    like_missing: bool = False
    to_sign_in: bool = False  # web pages: redirected to the sign-in page

    @classmethod
    def parse(cls, text: str) -> Cell:
        if text == "login":
            return cls(302, to_sign_in=True)
        return cls(int(text.rstrip("~")), like_missing=text.endswith("~"))

    @property
    def refused(self) -> bool:
        return self.status >= 400 or self.to_sign_in

    def __str__(self) -> str:
        return "login" if self.to_sign_in else f"{self.status}{'~' if self.like_missing else ''}"


@dataclass(frozen=True)
class World:
    """What the rows' requests refer to: first-clinic (C1) batches by the state a row needs, and more."""

    clinic: str
    din: dict[str, str]
    patient_id: int
    qc_id: dict[str, int]  # results entered by tech2: one for each verifier
    deviation_id: int
    digestion_seq: int
    notification_id: dict[str, int]  # one of each user's own
    lot_id: int
    spec: dict[str, Any]  # the bone-marrow specification in force
    proposal_id: int  # an open adipose specification proposal by qa2 (R-QC-6)
    verify_many: dict[str, list[int]]  # results entered by tech2, several verified with one signature
    harvest: dict[str, Any]  # harvest data for the batch's patient
    print_id: int = ABSENT  # a label print job of the registered batch (R-ZPL-1)
    attachment_id: int = ABSENT  # a photo of the administered batch (din["administered"])
    reaction_id: int = ABSENT  # an adverse reaction on the administered batch
    lookback_id: int = ABSENT  # a lookback naming the administered batch (C1's only)

    def missing(self) -> World:
        """The same references, to resources that do not exist."""
        return replace(
            self,
            clinic="C9",
            din={state: din[:7] + "999999" for state, din in self.din.items()},
            patient_id=ABSENT,
            qc_id=dict.fromkeys(self.qc_id, ABSENT),
            deviation_id=ABSENT,
            notification_id=dict.fromkeys(self.notification_id, ABSENT),
            proposal_id=ABSENT,
            verify_many={user: [ABSENT] for user in self.verify_many},
            print_id=ABSENT,
            attachment_id=ABSENT,
            reaction_id=ABSENT,
            lookback_id=ABSENT,
        )


@dataclass(frozen=True)
class Call:
    path: str
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    own_token: bool = False  # signs in afresh: for a request that ends its session, or starts one
    files: dict[str, tuple[bytes, str]] | None = None  # multipart: field -> (content, filename)


Request = Callable[[World, str | None], Call]


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    cells: dict[str, Cell]
    request: Request
    case: str

    @property
    def operation(self) -> str:
        return f"{self.method} {self.path}"


def row(table_line: str, request: Request) -> Row:
    """``"POST /batches/{din}/steps  harvest | 401 403 ..."``: operation, optional case, then one cell per role."""
    operation, _, outcomes = table_line.partition("|")
    method, path, *case = operation.split()
    cells = outcomes.split()
    assert len(cells) == len(ROLES), table_line
    return Row(method, path, dict(zip(ROLES, map(Cell.parse, cells), strict=True)), request, " ".join(case))


# --- requests ------------------------------------------------------------------------------------


Body = Callable[[World, str | None], dict[str, Any]]


def at(state: str, suffix: str = "", body: Body | None = None, **query: str) -> Request:
    """A request about the C1 batch kept in ``state``."""
    return lambda w, user: Call(f"/batches/{w.din[state]}{suffix}", body(w, user) if body else None, query)


def plain(path: str, body: Any = None) -> Request:
    return lambda _w, _user: Call(path, body)


def fixed(body: dict[str, Any]) -> Body:
    return lambda _w, _user: body


def in_hand(state: str, extra: dict[str, Any]) -> Body:
    """The body of a write made with the container scanned (R-COI-1)."""
    return lambda w, _user: {"scanned_din": w.din[state]} | extra


def harvest(w: World, _user: str | None) -> dict[str, Any]:
    return {"step": "harvest", "scanned_din": w.din["registered"], "data": w.harvest}


QC_TEST = {"tech": "viability_pct", "qa": "tnc_total"}  # each its own test: two allowed entries, no conflict
VERIFY = {"tech": "gram_stain", "qa": "endotoxin_eu_per_ml"}


def qc_entry(w: World, user: str | None) -> dict[str, Any]:
    test = QC_TEST.get(user or "", "cd34_pct")
    return {"scanned_din": w.din["processed"], "test": test, "value": GOOD_RESULTS["adipose"][test]}


def result_to_verify(w: World, user: str | None) -> int:
    return w.qc_id.get(user or "", w.qc_id["tech"])


def verify(w: World, user: str | None) -> Call:
    return Call(f"/batches/{w.din['processed']}/qc/{result_to_verify(w, user)}/verify", VERIFICATION)


PANEL = {"tech": "cd34_pct", "qa": "sterility_culture"}  # tests no other row of the processed batch enters


def panel_entry(w: World, user: str | None) -> dict[str, Any]:
    test = PANEL.get(user or "", "cd34_pct")
    return {"scanned_din": w.din["processed"], "results": [{"test": test, "value": GOOD_RESULTS["adipose"][test]}]}


def verify_several(w: World, user: str | None) -> Call:
    ids = w.verify_many.get(user or "", w.verify_many["tech"])
    return Call(f"/batches/{w.din['verify_many']}/qc/verify", {"qc_ids": ids} | VERIFICATION)


def correction(w: World, user: str | None) -> dict[str, Any]:
    """Each user a different value, so two allowed corrections both change something."""
    minutes = {"tech": 50, "qa": 55}.get(user or "", 60)
    return {"event_seq": w.digestion_seq, "reason": "transcription error", "data": {"duration_min": minutes}}


def own_notification(w: World, user: str | None) -> int:
    return w.notification_id.get(user or "", ABSENT)


def someone_elses_notification(w: World, user: str | None) -> int:
    return w.notification_id["tech" if user == "clinic" else "clinic"]


def mark_read(notification: Callable[[World, str | None], int]) -> Request:
    return lambda w, user: Call(f"/notifications/{notification(w, user)}/read")


def read_on_the_page(notification: Callable[[World, str | None], int]) -> Request:
    return lambda w, user: Call("/notifications", {"action": "read", "notification_id": str(notification(w, user))})


def of_the_clinic(path: str) -> Request:
    """A list filtered to the first clinic: the other clinic's user still sees only their own."""
    return lambda w, _user: Call(path, query={"clinic": w.clinic})


LOT = {"kind": "collagenase", "name": "n", "lot_number": "CG-9", "expires_on": "2099-01-01", "status": "released"}
EQUIPMENT = {
    "code": "E-9",
    "kind": "incubator",
    "name": "n",
    "calibration_due_on": "2099-01-01",
    "status": "in_service",
}
NEW_USER = {"username": "new-tech", "full_name": "New Tech", "role": "technician", "password": "a-long-password"}
PATIENT = {"family_name": "Roe", "given_name": "Rita", "birth_date": "1975-02-03", "clinic": "C1"}
SIGNED_APPROVAL = {"signature": signature("approved")}
VERIFICATION = {"signature": signature("verified")}
DISPOSITION = {"decision": "accept", "justification": "reviewed"} | SIGNED_APPROVAL
REJECTION = {"reason": "no longer needed", "signature": signature("rejected")}
DIGESTION = in_hand("at_lab", {"step": "digestion"} | LAB_STEPS["digestion"])
HANDOFF = in_hand("collected", {"to_username": "tech", "seal_id": "SEAL-1", "temperature_c": 6})
RECEIPT = in_hand("in_transit", {"seal_id": "SEAL-1", "temperature_c": 6, "condition": "intact"})
REACTION_CLOSING = {"conclusion": "self-limiting", "related_to_product": "no", "signature": signature("reviewed")}
LOOKBACK_CLOSING = {"conclusion": "patient followed up", "signature": signature("reviewed")}


def logger_file(state: str) -> Request:
    """A temperature-logger upload for leg 1 of the C1 batch kept in ``state`` (R-TMP-1)."""
    content = b"time,temperature\n2026-01-01T00:00:00Z,5\n"
    return lambda w, _user: Call(
        f"/batches/{w.din[state]}/custody/legs/1/temperatures",
        {"timezone": "UTC"},
        files={"file": (content, "log.csv")},
    )


def print_job(w: World, _user: str | None) -> Call:
    return Call(f"/batches/{w.din['registered']}/label/prints/{w.print_id}")


PLAN = {"baseline_window_days": 14, "visits": [{"months": 6, "window_days": 21}], "reason": "protocol amendment"}
BASELINE_VISIT = {
    "measured_on": datetime.now(UTC).date().isoformat(),
    "hair_density_per_cm2": 110,
    "patient_global_assessment": 0,
    "investigator_global_assessment": 0,
    "adverse_reaction": False,
}
BASELINE_RESET = {"starts_at": "2026-01-01T00:00:00+00:00", "reason": "new supplier"} | SIGNED_APPROVAL


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 80, 60)).save(out, "PNG")
    return out.getvalue()


PHOTO = png()

# fmt: off
ROWS: tuple[Row, ...] = (
    #    method path    (case)                               | anon adm  tech qa   C1   C2
    row("POST  /auth/token                                   | 200  200  200  200  200  200",
        lambda _w, user: Call("/auth/token", {"username": user or "tech", "password": PASSWORD})),
    # choosing a new password signs in with the current one: a too short new one is refused, writing nothing
    row("POST  /auth/password                                | 422  422  422  422  422  422",
        lambda _w, user: Call("/auth/password", {"username": user or "tech", "password": PASSWORD,
                                                 "new_password": "short"})),
    row("POST  /auth/revoke                                  | 401  204  204  204  204  204",
        lambda _w, _user: Call("/auth/revoke", own_token=True)),
    row("GET   /auth-events                                  | 401  200  403  403  403  403", plain("/auth-events")),
    # reference data: admin (R-ACC-2); lots and equipment are read by lab staff
    row("GET   /clinics                                      | 401  200  403  403  403  403", plain("/clinics")),
    row("POST  /clinics                                      | 401  201  403  403  403  403",
        plain("/clinics", {"code": "C3", "name": "Third"})),
    row("GET   /users                                        | 401  200  403  403  403  403", plain("/users")),
    row("POST  /users                                        | 401  201  403  403  403  403",
        plain("/users", NEW_USER)),
    row("PATCH /users/{username}                             | 401  200  403  403  403  403",
        plain("/users/qa2", {"role": "technician"})),
    row("GET   /reagent-lots                                 | 401  200  200  200  403  403", plain("/reagent-lots")),
    row("POST  /reagent-lots                                 | 401  201  403  403  403  403",
        plain("/reagent-lots", LOT)),
    row("PATCH /reagent-lots/{lot_id}                        | 401  200  403  403  403  403",
        lambda w, _user: Call(f"/reagent-lots/{w.lot_id}", {"status": "rejected"})),
    row("GET   /equipment                                    | 401  200  200  200  403  403", plain("/equipment")),
    row("POST  /equipment                                    | 401  201  403  403  403  403",
        plain("/equipment", EQUIPMENT)),
    row("PATCH /equipment/{code}                             | 401  200  403  403  403  403",
        plain("/equipment/CEN-OUT", {"status": "in_service"})),
    row("GET   /specifications                               | 401  200  200  200  200  200", plain("/specifications")),
    row("GET   /specifications/{tissue_source}/versions      | 401  200  200  200  200  200",
        plain("/specifications/adipose/versions")),
    # R-QC-6: admin or QA proposes; a QA user other than the proposer approves (so QA's withdrawal then finds
    # the proposal decided: 409)
    row("POST  /specifications/{tissue_source}/proposals     | 401  201  403  201  403  403",
        lambda w, _user: Call("/specifications/bone_marrow/proposals", {"body": w.spec, "reason": "tighter"})),
    row("GET   /specification-proposals                      | 401  200  403  200  403  403",
        plain("/specification-proposals")),
    row("GET   /specification-proposals/{proposal_id}        | 401  200  403  200  403  403",
        lambda w, _user: Call(f"/specification-proposals/{w.proposal_id}")),
    row("POST  /specification-proposals/{proposal_id}/approve | 401  403  403  200  403  403",
        lambda w, _user: Call(f"/specification-proposals/{w.proposal_id}/approve", SIGNED_APPROVAL)),
    row("POST  /specification-proposals/{proposal_id}/withdraw | 401  403  403  409  403  403",
        lambda w, _user: Call(f"/specification-proposals/{w.proposal_id}/withdraw", {"reason": "not needed"})),
    # patients: clinic (own), technician; QA reads them too (batch records under review show the patient)
    row("GET   /patients                                     | 401  403  200  200  200  200", plain("/patients")),
    row("GET   /patients ?clinic=C1                          | 401  403  200  200  200  200~",
        of_the_clinic("/patients")),
    row("POST  /patients                                     | 401  403  201  403  201  422",
        lambda _w, user: Call("/patients", PATIENT | {"mrn": f"MRN-{user}"})),
    # batches
    row("GET   /batches                                      | 401  200  200  200  200  200", plain("/batches")),
    row("GET   /batches ?clinic=C1                           | 401  200  200  200  200  200~",
        of_the_clinic("/batches")),
    row("POST  /batches                                      | 401  403  201  403  201  422~",
        lambda w, _user: Call("/batches", {"patient_id": w.patient_id, "tissue_source": "adipose"})),
    row("GET   /batches/{din}                                | 401  200  200  200  200  404~", at("registered")),
    row("GET   /batches/{din}/events                         | 401  200  200  200  200  404~",
        at("registered", "/events")),
    row("GET   /batches/{din}/readiness                      | 401  200  200  200  200  404~",
        at("registered", "/readiness")),
    row("POST  /batches/{din}/steps harvest                  | 401  403  403  403  201  404~",
        at("registered", "/steps", harvest)),
    row("POST  /batches/{din}/steps digestion                | 401  403  201  403  403  404~",
        at("at_lab", "/steps", DIGESTION)),
    # custody: only the custodian hands off, only the named recipient receives (409 custody_violation)
    row("POST  /batches/{din}/custody/handoff                | 401  403  409  409  201  404~",
        at("collected", "/custody/handoff", HANDOFF)),
    row("POST  /batches/{din}/custody/receipt                | 401  403  201  409  409  404~",
        at("in_transit", "/custody/receipt", RECEIPT)),
    row("POST  /batches/{din}/qc                             | 401  403  201  201  403  404~",
        at("processed", "/qc", qc_entry)),
    row("POST  /batches/{din}/qc/{qc_id}/verify              | 401  403  200  200  403  404~", verify),
    row("POST  /batches/{din}/qc/panel                       | 401  403  201  201  403  404~",
        at("processed", "/qc/panel", panel_entry)),
    row("POST  /batches/{din}/qc/verify                      | 401  403  200  200  403  404~", verify_several),
    row("POST  /batches/{din}/deviations                     | 401  403  201  201  201  404~",
        at("deviation", "/deviations", fixed({"description": "label smudged"}))),
    row("GET   /deviations                                   | 401  403  200  200  403  403", plain("/deviations")),
    row("POST  /deviations/{deviation_id}/disposition        | 401  403  403  200  403  403~",
        lambda w, _user: Call(f"/deviations/{w.deviation_id}/disposition", DISPOSITION)),
    # the processed batch lacks QC results, so QA's release is refused with its blockers (409 release_blocked)
    row("POST  /batches/{din}/release                        | 401  403  403  409  403  404~",
        at("processed", "/release", fixed(SIGNED_APPROVAL))),
    row("POST  /batches/{din}/reject                         | 401  403  403  200  403  404~",
        at("reject", "/reject", fixed(REJECTION))),
    # corrections: who made the original (tech's digestion here), or QA
    row("POST  /batches/{din}/corrections                    | 401  403  201  201  403  404~",
        at("corrected", "/corrections", correction)),
    # documents
    row("GET   /batches/{din}/label.pdf                      | 401  403  200  200  200  404~",
        at("registered", "/label.pdf", kind="collection")),
    row("GET   /batches/{din}/record.pdf                     | 401  403  200  200  200  404~",
        at("registered", "/record.pdf")),
    # interoperability (R-ZPL-1, R-TMP-1, R-EXP-1): no printer is configured here, so a print is refused (409)
    # after the access checks; leg 1 of a batch in transit is not received yet (409 leg_open)
    row("GET   /batches/{din}/label.zpl                      | 401  403  200  200  200  404~",
        at("registered", "/label.zpl", kind="collection")),
    row("POST  /batches/{din}/label/print                    | 401  403  409  409  409  404~",
        at("registered", "/label/print", fixed({"kind": "collection"}))),
    row("GET   /batches/{din}/label/prints/{print_id}        | 401  200  200  200  200  404~", print_job),
    row("POST  /batches/{din}/custody/legs/{leg}/temperatures | 401  403  409  409  409  404~",
        logger_file("leg_open")),
    row("GET   /qc-results                                   | 401  403  200  200  403  403", plain("/qc-results")),
    row("GET   /batches ?format=csv                          | 401  200  200  200  200  200",
        lambda _w, _user: Call("/batches", query={"format": "csv"})),
    row("GET   /deviations ?format=csv                       | 401  403  200  200  403  403",
        lambda _w, _user: Call("/deviations", query={"format": "csv"})),
    row("GET   /adverse-reactions ?format=csv                | 401  403  403  200  200  200",
        lambda _w, _user: Call("/adverse-reactions", query={"format": "csv"})),
    # audit trail
    row("GET   /audit/verify                                 | 401  200  403  200  403  403", plain("/audit/verify")),
    row("GET   /audit/checkpoints                            | 401  200  403  200  403  403",
        plain("/audit/checkpoints")),
    row("POST  /audit/checkpoints                            | 401  201  403  201  403  403",
        plain("/audit/checkpoints")),
    row("GET   /audit/public-key                             | 401  200  200  200  200  200",
        plain("/audit/public-key")),
    row("GET   /batches/{din}/audit-export                   | 401  403  200  200  200  404~",
        at("registered", "/audit-export")),
    row("POST  /audit/verifications                          | 401  202  403  202  403  403",
        plain("/audit/verifications")),
    row("GET   /audit/verifications/{run_id}                 | 401  200  403  200  403  403",
        plain("/audit/verifications/1")),
    # notifications: each user their own
    row("GET   /notifications                                | 401  200  200  200  200  200", plain("/notifications")),
    row("POST  /notifications/{notification_id}/read         | 401  200  200  200  200  200",
        mark_read(own_notification)),
    row("POST  /notifications/{notification_id}/read not-own | 401  404~ 404~ 404~ 404~ 404~",
        mark_read(someone_elses_notification)),
    # follow-up and trends (R-OUT-1..5, R-SPC-1..3): plans by admin and QA, visits and photos by the clinic
    row("GET   /follow-up-plans                              | 401  200  200  200  200  200",
        plain("/follow-up-plans")),
    row("POST  /follow-up-plans/{tissue_source}              | 401  201  403  403  403  403",
        plain("/follow-up-plans/adipose", PLAN)),
    row("POST  /follow-up-plans/{tissue_source}/{version}/approve | 401  403  403  200  403  403",
        plain("/follow-up-plans/bone_marrow/2/approve", SIGNED_APPROVAL)),
    row("GET   /batches/{din}/follow-ups                     | 401  200  200  200  200  404~",
        at("administered", "/follow-ups")),
    row("POST  /batches/{din}/follow-ups/{visit}             | 401  403  403  403  201  404~",
        at("administered", "/follow-ups/baseline", fixed(BASELINE_VISIT))),
    row("POST  /batches/{din}/attachments                    | 401  403  403  403  201  404~",
        lambda w, _user: Call(f"/batches/{w.din['administered']}/attachments", files={"file": (PHOTO, "photo.png")})),
    row("GET   /batches/{din}/attachments/{attachment_id}    | 401  200  200  200  200  404~",
        lambda w, _user: Call(f"/batches/{w.din['administered']}/attachments/{w.attachment_id}")),
    row("GET   /reports/outcomes                             | 401  403  403  200  200  200",
        plain("/reports/outcomes")),
    row("GET   /trends/{tissue_source}/{metric}              | 401  403  403  200  403  403",
        plain("/trends/adipose/viability_pct")),
    row("POST  /trends/{tissue_source}/{metric}/baseline     | 401  403  403  201  403  403",
        plain("/trends/adipose/viability_pct/baseline", BASELINE_RESET)),
    # investigations (R-ADV, R-LBK): QA; clinics report on and read their own, and acknowledge
    row("POST  /batches/{din}/adverse-reactions              | 401  403  403  201  201  404~",
        at("administered", "/adverse-reactions", lambda _w, _user: reaction())),
    row("GET   /adverse-reactions                            | 401  403  403  200  200  200",
        plain("/adverse-reactions")),
    row("GET   /adverse-reactions/{reaction_id}              | 401  403  403  200  200  404~",
        lambda w, _user: Call(f"/adverse-reactions/{w.reaction_id}")),
    row("GET   /adverse-reactions/{reaction_id}/report.pdf   | 401  403  403  200  200  404~",
        lambda w, _user: Call(f"/adverse-reactions/{w.reaction_id}/report.pdf")),
    row("POST  /adverse-reactions/{reaction_id}/close        | 401  403  403  200  403  403~",
        lambda w, _user: Call(f"/adverse-reactions/{w.reaction_id}/close", REACTION_CLOSING)),
    row("POST  /lookbacks                                    | 401  403  403  201  403  403",
        plain("/lookbacks", {"reason": "calibration drift", "seed": {"kind": "equipment", "value": "CEN-OUT"}})),
    row("GET   /lookbacks                                    | 401  403  403  200  200  200", plain("/lookbacks")),
    row("GET   /lookbacks/{lookback_id}                      | 401  403  403  200  200  404~",
        lambda w, _user: Call(f"/lookbacks/{w.lookback_id}")),
    row("POST  /lookbacks/{lookback_id}/acknowledge          | 401  403  403  403  200  404~",
        lambda w, _user: Call(f"/lookbacks/{w.lookback_id}/acknowledge")),
    row("POST  /lookbacks/{lookback_id}/close                | 401  403  403  200  403  403~",
        lambda w, _user: Call(f"/lookbacks/{w.lookback_id}/close", LOOKBACK_CLOSING)),
    row("POST  /reagent-lots/{lot_id}/recall                 | 401  200  403  403  403  403",
        lambda w, _user: Call(f"/reagent-lots/{w.lot_id}/recall", {"reason": "supplier recall"})),
)
# fmt: on


# --- the world the rows act on -------------------------------------------------------------------


def build_world(lab: Lab) -> World:
    """C1 batches in the states the rows need."""
    patient_id = lab.patient()["id"]
    _, reaction_id, lookback_id = investigated(lab, patient_id)

    def registered() -> str:
        return lab.ok(lab.post("clinic", "/batches", {"patient_id": patient_id, "tissue_source": "adipose"}))["din"]

    def collected() -> str:
        din = registered()
        lab.ok(lab.harvest(din))
        return din

    def in_transit() -> str:
        din = collected()
        lab.ok(lab.handoff(din))
        return din

    def at_lab() -> str:
        din = in_transit()
        lab.ok(lab.receive(din))
        return din

    corrected = at_lab()
    digestion_seq = lab.ok(lab.step(corrected, "digestion"))["seq"]
    processed = at_lab()
    for name in ("digestion", "isolation", "concentration"):
        lab.ok(lab.step(processed, name))
    qc_id = {
        user: lab.ok(lab.qc(processed, test, GOOD_RESULTS["adipose"][test], by="tech2"))["id"]
        for user, test in VERIFY.items()
    }
    several = at_lab()
    for name in ("digestion", "isolation", "concentration"):
        lab.ok(lab.step(several, name))
    entered = {
        test: lab.ok(lab.qc(several, test, value, by="tech2"))["id"] for test, value in GOOD_RESULTS["adipose"].items()
    }
    verify_many = {
        "tech": [entered["viability_pct"], entered["tnc_total"]],
        "qa": [entered["gram_stain"], entered["cd34_pct"]],
    }
    adipose = next(s["body"] for s in lab.ok(lab.get("qa", "/specifications"), 200) if s["tissue_source"] == "adipose")
    proposal_id = lab.ok(
        lab.post("qa2", "/specifications/adipose/proposals", {"body": adipose, "reason": "review of the limits"})
    )["id"]
    deviation = registered()
    deviation_id = lab.ok(lab.post("tech", f"/batches/{deviation}/deviations", {"description": "seal loose"}))["id"]
    lab.ok(lab.post("qa", "/audit/verifications"), 202)  # run 1, for GET /audit/verifications/1
    followed = administered(lab, "MRN-W")
    photo = lab.client.post(
        f"/api/v1/batches/{followed}/attachments", data={"file": (io.BytesIO(PHOTO), "p.png")},
        headers=lab.headers("clinic"), content_type="multipart/form-data",
    )  # fmt: skip
    lab.ok(lab.post("admin", "/follow-up-plans/bone_marrow", PLAN))
    din = {
        "registered": registered(),
        "collected": collected(),
        "in_transit": in_transit(),
        "at_lab": at_lab(),
        "corrected": corrected,
        "processed": processed,
        "deviation": deviation,
        "reject": registered(),
        "leg_open": in_transit(),  # for temperature uploads only: its leg stays unreceived
        "administered": followed,
        "verify_many": several,
    }
    world = World(
        clinic="C1",
        din=din,
        patient_id=patient_id,
        qc_id=qc_id,
        deviation_id=deviation_id,
        digestion_seq=digestion_seq,
        notification_id=notify_everyone(lab),
        lot_id=lab.lot("quarantined"),
        spec=next(
            spec["body"]
            for spec in lab.ok(lab.get("qa", "/specifications"), 200)
            if spec["tissue_source"] == "bone_marrow"
        ),
        harvest=lab.harvest_data(),
        proposal_id=proposal_id,
        verify_many=verify_many,
        print_id=a_print_job(lab, din["registered"]),
        attachment_id=lab.ok(photo)["id"],
        reaction_id=reaction_id,
        lookback_id=lookback_id,
    )
    lab.ok(lab.post("qa", "/audit/checkpoints"), 201)  # every batch in a checkpoint: exports can be taken
    return world


def a_print_job(lab: Lab, din: str) -> int:
    """A label print job of the batch, as a printer that did not answer leaves it (R-ZPL-1)."""

    def work(session) -> int:
        batch = session.execute(select(Batch).where(Batch.din == din)).scalar_one()
        clinic = session.execute(select(User).where(User.username == "clinic")).scalar_one()
        job = LabelPrint(batch_id=batch.id, kind="collection", printer="192.0.2.1:9100", status="failed",
                         requested_by_id=clinic.id, requested_at=datetime.now(UTC), error="test")  # fmt: skip
        session.add(job)
        session.flush()
        return job.id

    return lab.db.write(work)


def notify_everyone(lab: Lab) -> dict[str, int]:
    """One notification for each matrix user, about the first outbox message (the deviation opened)."""

    def work(session) -> dict[str, int]:
        message = session.execute(select(OutboxMessage).order_by(OutboxMessage.id).limit(1)).scalar_one()
        made = {}
        for user in ROLES[1:]:
            notification = Notification(
                user_id=session.execute(select(User.id).where(User.username == user)).scalar_one(),
                outbox_id=message.id,
                topic="deviation.opened",
                message="A deviation was opened.",
                payload={},
                created_at=datetime.now(UTC),
            )
            session.add(notification)
            session.flush()
            made[user] = notification.id
        return made

    return lab.db.write(work)


# --- running a matrix ----------------------------------------------------------------------------


@cache
def every_row_query(ignored: frozenset[str]) -> str:
    """One statement reading every row of every table as text (one round trip, in SQLite and PostgreSQL)."""

    def value(column: Column) -> str:  # bytes as their length: a photo's content never changes (append-only)
        return f'length("{column.name}")' if isinstance(column.type, LargeBinary) else f'"{column.name}"'

    def as_text(table: Table) -> str:
        columns = " || '|' || ".join(f"COALESCE(CAST({value(c)} AS TEXT), '-')" for c in table.columns)
        return f"SELECT '{table.name}', {columns} FROM \"{table.name}\""

    return " UNION ALL ".join(as_text(t) for name, t in sorted(Base.metadata.tables.items()) if name not in ignored)


def contents(lab: Lab, ignored: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Every row of every table: a refused request must leave all of it as it was."""
    found: dict[str, list[str]] = {name: [] for name in Base.metadata.tables if name not in ignored}
    for name, values in lab.sql(every_row_query(ignored)):
        found[name].append(values)
    return {name: sorted(values) for name, values in found.items()}


def first_clinic_names(lab: Lab) -> set[str]:
    """What the other clinic must never be told: the first clinic's DINs and patients' MRNs."""
    found = lab.sql(
        "SELECT b.din FROM batches b JOIN clinics c ON c.id = b.clinic_id WHERE c.code = 'C1' "
        "UNION SELECT p.mrn FROM patients p JOIN clinics c ON c.id = p.clinic_id WHERE c.code = 'C1'"
    )
    return {name for (name,) in found}


class Tables:
    """Every row of every table, read again only after a request that may have written."""

    def __init__(self, lab: Lab, ignored: frozenset[str]) -> None:
        self.lab, self.ignored = lab, ignored
        self.known: dict[str, list[str]] | None = None

    def now(self) -> dict[str, list[str]]:
        if self.known is None:
            self.known = contents(self.lab, self.ignored)
        return self.known

    def written_since(self, before: dict[str, list[str]]) -> list[str]:
        self.known = contents(self.lab, self.ignored)
        return sorted(name for name in self.known if self.known[name] != before[name])

    def forget(self) -> None:
        self.known = None


class Api:
    """The HTTP API: bearer tokens, JSON bodies, problem+json refusals."""

    ignored_tables: frozenset[str] = frozenset()

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def sign_in(self, users: list[str | None]) -> None:
        for user in users:
            self.session(user)

    def session(self, user: str | None) -> dict[str, str]:
        return self.lab.headers(user) if user is not None else {}

    def fresh_session(self, user: str | None) -> dict[str, str]:
        if user is None:
            return {}
        response = self.lab.client.post("/api/v1/auth/token", json={"username": user, "password": PASSWORD})
        return {"Authorization": f"Bearer {self.lab.ok(response, 200)['token']}"}

    def send(self, row: Row, call: Call, headers: dict[str, str]):
        if call.files is not None:
            parts = {name: (io.BytesIO(content), filename) for name, (content, filename) in call.files.items()}
            return self.lab.client.open(
                f"/api/v1{call.path}", method=row.method, data=(call.body or {}) | parts, headers=headers,
                content_type="multipart/form-data",
            )  # fmt: skip
        return self.lab.client.open(
            f"/api/v1{call.path}", method=row.method, json=call.body, query_string=call.query, headers=headers
        )

    def answer(self, response) -> tuple[int, Any]:
        return response.status_code, response.get_json(silent=True)

    def malformed(self, _cell: Cell, response) -> str | None:
        """A refusal is problem+json with the stable code of its status."""
        code = PROBLEM_CODES.get(response.status_code)
        body = response.get_json(silent=True) or {}
        if response.mimetype != "application/problem+json" or (code and body.get("code") != code):
            return f"not problem+json with code {code}"
        return None


def text_of(response) -> str:
    return response.get_data().decode(errors="replace")  # PDFs too


def user_of(role: str) -> str | None:
    return None if role == "anonymous" else role


def check_cell(surface: Api | Web, tables: Tables, world: World, row: Row, role: str) -> list[str]:
    """The cell's mismatches: outcome and its form, writes by a refused request, likeness to a missing resource."""
    cell, user = row.cells[role], user_of(role)
    call = row.request(world, user)
    if call.own_token:
        session = surface.fresh_session(user)
        tables.forget()
    else:
        session = surface.session(user)
    before = tables.now() if cell.refused else None
    response = surface.send(row, call, session)
    found = []
    if response.status_code != cell.status:
        found.append(f"answered {response.status_code}: {text_of(response)[:300]}")
    elif cell.refused and (malformed := surface.malformed(cell, response)) is not None:
        found.append(malformed)
    if before is None:
        tables.forget()
    elif written := tables.written_since(before):
        found.append(f"refused, yet wrote to {written}")
    if cell.like_missing:
        absent = surface.answer(surface.send(row, row.request(world.missing(), user), session))
        if absent != surface.answer(response):
            found.append(f"unlike a missing resource, which answers {str(absent)[:300]}")
        if written := tables.written_since(tables.now()):
            found.append(f"the request about a missing resource wrote to {written}")
    if role == "other":
        leaked = {name for name in first_clinic_names(surface.lab) if name in text_of(response)}
        if leaked:
            found.append(f"names the first clinic's {sorted(leaked)}")
    return found


def assert_matrix(surface: Api | Web, rows: tuple[Row, ...], columns: tuple[str, ...]) -> None:
    """Run ``columns`` of every row over one world; fail listing every mismatching cell at once."""
    world = build_world(surface.lab)
    surface.sign_in([user_of(role) for role in columns])
    tables = Tables(surface.lab, surface.ignored_tables)
    report = [
        f"{row.operation} {row.case} as {role}: expected {row.cells[role]}, {problem}"
        for row in rows
        for role in columns
        for problem in check_cell(surface, tables, world, row, role)
    ]
    if report:
        pytest.fail("\n".join(report), pytrace=False)


# --- the API tests -------------------------------------------------------------------------------


def openapi_path(rule: str) -> str:
    """``/api/v1/batches/<string:din>`` as OpenAPI writes it: ``/batches/{din}``."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.removeprefix("/api/v1"))


def operations(app, wanted: Callable[[Any], bool]) -> set[str]:
    """Every routed method and path of the rules ``wanted``, paths written as in OpenAPI."""
    return {
        f"{method} {openapi_path(rule.rule)}"
        for rule in app.url_map.iter_rules()
        if wanted(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_r_acc_1_r_acc_2_r_acc_3_the_matrix_has_a_row_for_every_api_operation(app, client):
    routed = operations(app, lambda rule: rule.rule.startswith("/api/v1/"))
    tabled = {row.operation for row in ROWS}
    assert routed - tabled == set(), "operations without a row in the access matrix"
    assert tabled - routed == set(), "rows for operations that are not routed"
    document = client.get("/api/openapi.json").get_json()
    documented = {
        f"{method.upper()} {path.removeprefix('/api/v1')}"
        for path, described in document["paths"].items()
        if path.startswith("/api/v1/")
        for method in described
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == routed


def test_r_acc_1_r_acc_2_r_acc_3_anonymous_requests_get_401_everywhere_but_sign_in(lab):
    assert_matrix(Api(lab), ROWS, ("anonymous",))


def test_r_acc_1_own_clinic_is_served_and_another_clinic_gets_what_a_missing_resource_gets(lab):
    assert_matrix(Api(lab), ROWS, ("clinic", "other"))


def test_r_acc_2_admin_manages_reference_data_and_has_no_batch_authority(lab):
    assert_matrix(Api(lab), ROWS, ("admin",))


def test_r_acc_3_technician_and_qa_reach_exactly_their_operations(lab):
    assert_matrix(Api(lab), ROWS, ("tech", "qa"))


# --- the web pages (requirements §7): the same roles over the same services -------------------------------

CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
STATIC_ENDPOINTS = frozenset({"static", "web.static", "swagger_static"})


def csrf_token(page: str) -> str:
    found = CSRF_TOKEN.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Web:
    """The web pages: one signed-in browser (session cookie) per user; every form carries its CSRF token."""

    # A session's keep-alive extends its token's expiry once a minute: the page's bookkeeping, not the request's.
    ignored_tables = frozenset({"api_tokens"})

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.browsers: dict[str | None, tuple[Any, str]] = {}

    def sign_in(self, users: list[str | None]) -> None:
        for user in users:
            self.browsers[user] = self.fresh_session(user)

    def session(self, user: str | None) -> tuple[Any, str]:
        return self.browsers[user]

    def fresh_session(self, user: str | None) -> tuple[Any, str]:
        """A new browser, signed in as ``user`` (or not), and the CSRF token of its session."""
        client = self.lab.app.test_client()
        token = csrf_token(client.get("/login").text)
        if user is None:
            return client, token
        response = client.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": token})
        assert response.status_code == 303, response.text
        return client, csrf_token(client.get("/notifications").text)

    def send(self, row: Row, call: Call, browser: tuple[Any, str]):
        client, token = browser
        if row.method == "GET":
            return client.get(call.path, query_string=call.query)
        response = client.post(call.path, data=(call.body or {}) | {"csrf_token": token})
        if response.status_code == 303:
            client.get(response.headers["Location"])  # as a browser would, which shows (and so clears) the flash
        return response

    def answer(self, response) -> tuple[int, str | None, str]:
        """What a reader sees: the status, where it redirects, the page (its CSRF token aside)."""
        page = CSRF_TOKEN.sub("", text_of(response))
        return response.status_code, response.headers.get("Location"), page

    def malformed(self, cell: Cell, response) -> str | None:
        location = response.headers.get("Location", "")
        if cell.to_sign_in and not location.startswith("/login"):
            return f"redirected to {location!r}, not to the sign-in page"
        return None


def form(path: str, action: str, fields: dict[str, str]) -> Request:
    """A form on a page, naming its ``action``."""
    return lambda _w, _user: Call(path, {"action": action} | fields)


def form_of(body: dict[str, Any], prefix: str = "") -> dict[str, str | list[str]]:
    """An API body as the card's form sends it: ``data.weight_kg``, ``signature.password``, lists as repeats."""
    fields: dict[str, str | list[str]] = {}
    for name, value in body.items():
        if isinstance(value, dict):
            fields |= form_of(value, f"{prefix}{name}.")
        else:
            fields[f"{prefix}{name}"] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return fields


def on_the_card(state: str, action: str, body: Body) -> Request:
    """A form on the card of the C1 batch kept in ``state``, with the fields of the API's body."""
    return lambda w, user: Call(f"/batches/{w.din[state]}", {"action": action} | form_of(body(w, user)))


def logger_upload(state: str) -> Request:
    """The card's logger form for leg 1 of the C1 batch kept in ``state``, with a file (R-TMP-1)."""
    content = b"time,temperature\n2026-01-01T00:00:00Z,5\n"
    return lambda w, _user: Call(
        f"/batches/{w.din[state]}",
        {"action": "temperatures", "leg": "1", "timezone": "UTC", "file": (io.BytesIO(content), "log.csv")},
    )


def signs_in(_w: World, user: str | None) -> Call:
    """The column's user signs in on a new browser (anonymous: a technician)."""
    return Call("/login", {"username": user or "tech", "password": PASSWORD}, own_token=True)


SPEC_FORM = {
    "tissue_source": "bone_marrow",
    "stability_hours": "24",
    "transport_temperature_c.min": "2",
    "transport_temperature_c.max": "25",
    "tests.viability_pct.min": "70",
    "tests.tnc_total.min": "100000000",
    "tests.endotoxin_eu_per_ml.max_eu_per_kg": "5",
}

VISIT_FORM = {"action": "record", "form_id": "visit"} | form_of(BASELINE_VISIT | {"adverse_reaction": "no"})

# fmt: off
WEB_ROWS: tuple[Row, ...] = (
    #    method path    (case)               | anon  adm   tech  qa    C1    C2
    row("GET   /                             | login 302   302   302   302   302", plain("/")),
    row("GET   /login                        | 200   200   200   200   200   200", plain("/login")),
    row("GET   /favicon.ico                  | 200   200   200   200   200   200", plain("/favicon.ico")),
    row("POST  /login                        | 303   303   303   303   303   303", signs_in),
    row("POST  /logout                       | login 303   303   303   303   303",
        lambda _w, _user: Call("/logout", own_token=True)),
    row("GET   /notifications                | login 200   200   200   200   200", plain("/notifications")),
    row("POST  /notifications                | login 303   303   303   303   303",
        read_on_the_page(own_notification)),
    row("POST  /notifications not-own        | login 404~  404~  404~  404~  404~",
        read_on_the_page(someone_elses_notification)),
    row("GET   /bench                        | login 403   200   200   403   403", plain("/bench")),
    row("GET   /qa                           | login 403   403   200   403   403", plain("/qa")),
    row("GET   /audit                        | login 200   403   200   403   403", plain("/audit")),
    row("POST  /audit                        | login 303   403   303   403   403",
        lambda _w, _user: Call("/audit", {"action": "full", "form_id": "full"})),
    row("GET   /clinic                       | login 403   403   403   200   200", plain("/clinic")),
    row("GET   /clinic/patients              | login 403   403   403   200   200", plain("/clinic/patients")),
    row("POST  /clinic/patients              | login 403   403   403   303   303",
        lambda _w, user: Call("/clinic/patients", {"action": "register", "mrn": f"WEB-{user}"} | PATIENT)),
    row("GET   /admin                        | login 302   403   403   403   403", plain("/admin")),
    row("GET   /admin/users                  | login 200   403   403   403   403", plain("/admin/users")),
    row("POST  /admin/users                  | login 303   403   403   403   403",
        form("/admin/users", "create", NEW_USER | {"username": "web-tech"})),
    row("GET   /admin/clinics                | login 200   403   403   403   403", plain("/admin/clinics")),
    row("POST  /admin/clinics                | login 303   403   403   403   403",
        form("/admin/clinics", "create", {"code": "C4", "name": "Fourth"})),
    row("GET   /admin/lots                   | login 200   403   403   403   403", plain("/admin/lots")),
    row("POST  /admin/lots                   | login 303   403   403   403   403",
        form("/admin/lots", "create", LOT | {"lot_number": "CG-W"})),
    row("GET   /admin/equipment              | login 200   403   403   403   403", plain("/admin/equipment")),
    row("POST  /admin/equipment              | login 303   403   403   403   403",
        form("/admin/equipment", "create", EQUIPMENT | {"code": "E-W"})),
    row("GET   /admin/specifications         | login 200   403   200   403   403",
        plain("/admin/specifications")),
    # admin proposes first; QA's proposal for the same tissue source then finds one open (409)
    row("POST  /admin/specifications         | login 303   403   409   403   403",
        form("/admin/specifications", "propose", SPEC_FORM | {"reason": "annual review"})),
    # the batch card: admins read it for audits; its forms call the API's services
    row("GET   /batches/{din}                | login 200   200   200   200   404~", at("registered")),
    row("POST  /batches/{din} step:harvest   | login 403   403   403   303   404~",
        on_the_card("registered", "step", harvest)),
    row("POST  /batches/{din} step:digestion | login 403   303   403   403   404~",
        on_the_card("at_lab", "step", DIGESTION)),
    row("POST  /batches/{din} handoff        | login 403   409   409   303   404~",
        on_the_card("collected", "handoff", HANDOFF)),
    row("POST  /batches/{din} receipt        | login 403   303   409   409   404~",
        on_the_card("in_transit", "receipt", RECEIPT)),
    row("POST  /batches/{din} qc             | login 403   303   303   403   404~",
        on_the_card("processed", "qc", qc_entry)),
    row("POST  /batches/{din} qc_panel       | login 403   303   303   403   404~",
        on_the_card("processed", "qc_panel", lambda w, user: {"scanned_din": w.din["processed"]} | {
            f"value.{PANEL.get(user or '', 'cd34_pct')}": GOOD_RESULTS["adipose"][PANEL.get(user or "", "cd34_pct")]})),
    row("POST  /batches/{din} verify         | login 403   303   303   403   404~",
        on_the_card("processed", "verify", lambda w, user: {"qc_id": result_to_verify(w, user)} | VERIFICATION)),
    row("POST  /batches/{din} deviation      | login 403   303   303   303   404~",
        on_the_card("deviation", "deviation", fixed({"description": "label smudged"}))),
    row("POST  /batches/{din} dispose        | login 403   403   303   403   404~",
        on_the_card("deviation", "dispose", lambda w, _user: {"deviation_id": w.deviation_id} | DISPOSITION)),
    row("POST  /batches/{din} release        | login 403   403   409   403   404~",
        on_the_card("processed", "release", fixed(SIGNED_APPROVAL))),
    row("POST  /batches/{din} reject         | login 403   403   303   403   404~",
        on_the_card("reject", "reject", fixed(REJECTION))),
    row("POST  /batches/{din} label          | login 403   200   200   200   404~",
        on_the_card("registered", "label", fixed({"kind": "collection"}))),
    # no printer is configured here; leg 1 of a batch in transit is not received yet: both refused after access
    row("POST  /batches/{din} print_label    | login 403   409   409   409   404~",
        on_the_card("registered", "print_label", fixed({"kind": "collection"}))),
    row("POST  /batches/{din} temperatures   | login 403   409   409   409   404~", logger_upload("leg_open")),
    row("GET   /batches/{din}/record         | login 403   200   200   200   404~", at("registered", "/record")),
    row("GET   /batches/{din}/record.pdf     | login 403   200   200   200   404~",
        at("registered", "/record.pdf")),
    row("GET   /batches/{din}/audit-export   | login 403   200   200   200   404~",
        at("registered", "/audit-export")),
    # lists as CSV (R-EXP-1), with the list's access rules: another clinic's user gets only their own
    row("GET   /exports/{name}.csv           | login 200   200   200   200   200", plain("/exports/batches.csv")),
    # investigations: QA's page; the clinic reports on its administered batch and acknowledges
    row("GET   /investigations               | login 403   403   200   403   403", plain("/investigations")),
    row("POST  /investigations               | login 403   403   303   403   403",
        form("/investigations", "open_lookback", {"seed.kind": "equipment", "seed.value": "CEN-OUT", "reason": "x"})),
    row("GET   /batches/{din}/adverse-reaction | login 403 403   200   200   404~",
        at("administered", "/adverse-reaction")),
    row("POST  /batches/{din}/adverse-reaction | login 403 403   303   303   404~",
        at("administered", "/adverse-reaction", lambda _w, _user: reaction_form())),
    row("POST  /lookbacks/{lookback_id}/acknowledge | login 403 403 403 303 404~",
        lambda w, _user: Call(f"/lookbacks/{w.lookback_id}/acknowledge", {"next": "/clinic"})),
    # follow-up and trends: the clinic's visits, QA's trends, outcomes for both
    row("GET   /clinic/follow-ups            | login 403   403   403   200   200", plain("/clinic/follow-ups")),
    row("GET   /batches/{din}/follow-ups/{visit} | login 403 403   403   200   404~",
        at("administered", "/follow-ups/baseline")),
    row("POST  /batches/{din}/follow-ups/{visit} | login 403 403   403   303   404~",
        lambda w, _user: Call(f"/batches/{w.din['administered']}/follow-ups/baseline", VISIT_FORM)),
    row("GET   /batches/{din}/photos/{attachment_id} | login 200 200 200 200   404~",
        lambda w, _user: Call(f"/batches/{w.din['administered']}/photos/{w.attachment_id}")),
    row("GET   /qa/trends                    | login 403   403   200   403   403", plain("/qa/trends")),
    row("POST  /qa/trends                    | login 403   403   303   403   403",
        form("/qa/trends", "reset", {"tissue_source": "adipose", "metric": "viability_pct",
                                     "form_id": "reset-adipose-viability_pct"} | form_of(BASELINE_RESET))),
    row("GET   /qa/trends/{tissue_source}/{metric}.svg | login 403 403 200 403  403",
        plain("/qa/trends/adipose/viability_pct.svg")),
    row("GET   /outcomes                     | login 403   403   200   200   200", plain("/outcomes")),
    row("GET   /outcomes/{chart}.svg         | login 403   403   200   200   200", plain("/outcomes/change.svg")),
    # the API's description is public
    row("GET   /api/openapi.json             | 200   200   200   200   200   200", plain("/api/openapi.json")),
    row("GET   /api/docs                     | 200   200   200   200   200   200", plain("/api/docs")),
    # operations (R-OPS-1, R-OPS-2): probes for everyone, metrics for loopback (the test client's address)
    row("GET   /healthz                      | 200   200   200   200   200   200", plain("/healthz")),
    row("GET   /readyz                       | 200   200   200   200   200   200", plain("/readyz")),
    row("GET   /metrics                      | 200   200   200   200   200   200", plain("/metrics")),
    # single sign-on (R-OPS-4): not configured here, so no such pages; the signing password is for SSO sessions
    row("GET   /login/sso                    | 404   404   404   404   404   404", plain("/login/sso")),
    row("GET   /login/sso/callback           | 404   404   404   404   404   404", plain("/login/sso/callback")),
    row("GET   /signing-password             | login 403   403   403   403   403", plain("/signing-password")),
    row("POST  /signing-password             | login 403   403   403   403   403",
        lambda _w, _user: Call("/signing-password", {"password": "new-signing-pw", "confirmation": "new-signing-pw"})),
)
# fmt: on


def test_r_acc_1_r_acc_2_r_acc_3_the_web_matrix_has_a_row_for_every_page(app):
    routed = operations(
        app,
        lambda rule: not rule.rule.startswith(("/api/v1/", FHIR_PREFIX)) and rule.endpoint not in STATIC_ENDPOINTS,
    )
    tabled = {row.operation for row in WEB_ROWS}
    assert routed - tabled == set(), "pages without a row in the web access matrix"
    assert tabled - routed == set(), "rows for pages that are not routed"


def test_r_acc_1_r_acc_2_r_acc_3_every_web_page_for_every_role(lab):
    assert_matrix(Web(lab), WEB_ROWS, ROLES)


# --- the FHIR API (R-FHIR-1): the API's bearer tokens and access rules; refusals are OperationOutcomes ---

FHIR_PREFIX = "/fhir"
FHIR_ISSUES = {401: "login", 403: "forbidden", 404: "not-found"}
ELSEWHERE = "A999926999999"  # a DIN no batch has: searches about it name nothing of the first clinic


class Fhir(Api):
    """The FHIR read API: the API's tokens, application/fhir+json answers."""

    def send(self, row: Row, call: Call, headers: dict[str, str]):
        return self.lab.client.open(
            call.path, method=row.method, query_string=call.query, headers=headers | {"Accept": "application/fhir+json"}
        )

    def malformed(self, _cell: Cell, response) -> str | None:
        """A refusal is an OperationOutcome (application/fhir+json) with the issue type of its status."""
        body = response.get_json(silent=True) or {}
        issue = FHIR_ISSUES.get(response.status_code)
        if response.mimetype != "application/fhir+json" or body.get("resourceType") != "OperationOutcome":
            return "not an OperationOutcome as application/fhir+json"
        if issue and body["issue"][0]["code"] != issue:
            return f"not an issue of type {issue}"
        return None


def fhir_read(resource: str, ident: Callable[[World], str]) -> Request:
    return lambda w, _user: Call(f"{FHIR_PREFIX}/{resource}/{ident(w)}")


def fhir_search(resource: str, **query: str) -> Request:
    return lambda _w, _user: Call(f"{FHIR_PREFIX}/{resource}", query=query)


# fmt: off
FHIR_ROWS: tuple[Row, ...] = (
    #    method path    (case)                                      | anon adm  tech qa   C1   C2
    row("GET   /fhir/metadata                                      | 200  200  200  200  200  200",
        plain(f"{FHIR_PREFIX}/metadata")),
    row("GET   /fhir/BiologicallyDerivedProduct/{din}              | 401  200  200  200  200  404~",
        fhir_read("BiologicallyDerivedProduct", lambda w: w.din["registered"])),
    row("GET   /fhir/BiologicallyDerivedProduct                    | 401  200  200  200  200  200",
        fhir_search("BiologicallyDerivedProduct", **{"patient.identifier": "MRN-ELSEWHERE"})),
    # the registered batch was never dispatched: its dispense is as missing as a missing batch's
    row("GET   /fhir/BiologicallyDerivedProductDispense/{dispense_id} | 401  404~ 404~ 404~ 404~ 404~",
        fhir_read("BiologicallyDerivedProductDispense", lambda w: f"{w.din['registered']}-1")),
    row("GET   /fhir/BiologicallyDerivedProductDispense            | 401  200  200  200  200  200",
        fhir_search("BiologicallyDerivedProductDispense", product=f"BiologicallyDerivedProduct/{ELSEWHERE}")),
)
# fmt: on


def test_r_fhir_1_r_acc_1_the_fhir_matrix_has_a_row_for_every_fhir_operation(app, client):
    routed = operations(app, lambda rule: rule.rule.startswith(FHIR_PREFIX))
    tabled = {row.operation for row in FHIR_ROWS}
    assert routed - tabled == set(), "FHIR operations without a row in the FHIR access matrix"
    assert tabled - routed == set(), "rows for FHIR operations that are not routed"
    document = client.get("/api/openapi.json").get_json()
    documented = {
        f"{method.upper()} {path}"
        for path, described in document["paths"].items()
        if path.startswith(FHIR_PREFIX)
        for method in described
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == routed


def test_r_fhir_1_r_acc_1_every_fhir_read_for_every_role(lab):
    assert_matrix(Fhir(lab), FHIR_ROWS, ROLES)
