"""One policy: what may this actor do to this batch now, and if not, why and who can instead.

The batch card, the API's ``next_actions`` and ``decisions``, and the services ask the
same functions. A ``check_*`` function raises the DomainError a service refuses with;
``decide`` runs the same checks for every action a batch has now and turns each
refusal into words: the reason, and who can take the action instead. An action that
could only be refused is therefore never offered: the page shows its reason instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from labtrack.domain.actors import Action, Actor, Role, can
from labtrack.domain.errors import (
    Conflict,
    CustodyViolation,
    DomainError,
    Forbidden,
    InvalidTransition,
    ReleaseBlocked,
)
from labtrack.domain.lifecycle import (
    TERMINAL,
    BatchState,
    Status,
    allowed_actions,
    check_hand_off_by,
    check_receipt,
    check_step,
)
from labtrack.domain.process import Performer
from labtrack.domain.qc import STERILITY, STERILITY_PENDING
from labtrack.domain.release import BEFORE_RELEASE, READY_STATUSES, Blocker, QcView, release_blockers

QC_ENTRY_STATUSES = frozenset({Status.PROCESSED, Status.AWAITING_RELEASE})


class LabelKind(StrEnum):
    """A batch's labels: the product label of a released batch, the collection label before it leaves the clinic."""

    PRODUCT = "product"
    COLLECTION = "collection"


# Events whose actor "performed or verified a step or result" (segregation of duties, R-REL-1).
PARTICIPATION_WORDS = {
    "qc_recorded": "entered QC results",
    "qc_verified": "verified QC results",
    "correction": "corrected an entry",
}
STEP_PARTICIPATION = "performed a process step"


@dataclass(frozen=True)
class ResultFacts:
    """One QC result as the decisions read it."""

    id: int
    test: str
    value: float | str
    within_spec: bool
    entered_by_id: int
    verified_by_id: int | None
    record_hash: str
    covered_by_accepted_deviation: bool = False
    unit: str | None = None
    limit: str | None = None

    @property
    def verified(self) -> bool:
        return self.verified_by_id is not None

    def view(self) -> QcView:
        return QcView(
            self.id,
            self.test,
            self.value,
            self.within_spec,
            self.verified,
            self.covered_by_accepted_deviation,
            self.unit,
            self.limit,
        )


@dataclass(frozen=True)
class BatchFacts:
    """What every decision about one batch needs, read once."""

    state: BatchState
    now: datetime
    required: tuple[str, ...] = ()
    results: tuple[ResultFacts, ...] = ()
    open_deviation_ids: tuple[int, ...] = ()
    # who took part in the batch (user id -> event types): segregation of duties (R-REL-1)
    participation: Mapping[int, frozenset[str]] = field(default_factory=dict)
    custodian_name: str | None = None
    recipient_name: str | None = None

    def views(self) -> list[QcView]:
        return [r.view() for r in self.results]

    def result(self, result_id: int) -> ResultFacts | None:
        return next((r for r in self.results if r.id == result_id), None)


@dataclass(frozen=True)
class Decision:
    """One action: allowed, or refused with the reason and who can take it instead, in words."""

    action: str
    allowed: bool
    reason: str = ""
    by: str = ""
    code: str = ""
    warning: str = ""  # allowed, but taking it has a consequence worth saying first
    subject: int | None = None  # the QC result or deviation it concerns

    must: str = ""  # what ``by`` must do instead, when the refusal is about who acts ("release")

    @property
    def sentence(self) -> str:
        """The refusal as words for a person, e.g. "Another QA user must release: you verified ..."."""
        if self.allowed:
            return self.warning
        if self.must:
            return f"{_capital(self.by)} must {self.must}: {self.reason}"
        if self.by and self.code != "forbidden":
            return f"{self.reason} Ask {self.by}."
        return self.reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "allowed": self.allowed,
            "reason": self.reason or None,
            "by": self.by or None,
            "code": self.code or None,
            "warning": self.warning or None,
            "sentence": self.sentence or None,
            "subject": self.subject,
        }


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# Who takes each action, in words, for an actor whose role does not.
WHO = {
    "harvest": "clinic staff of the batch's clinic",
    "administration": "clinic staff of the batch's clinic",
    "lab_step": "a technician",
    "qc": "lab staff (a technician or QA)",
    "verify": "a second person from the lab (a technician or QA)",
    "release": "a QA user",
    "reject": "a QA user",
    "dispose": "a QA user",
    "open_deviation": "lab staff or the batch's clinic",
    "label": "lab staff or the batch's clinic",
    "record": "lab staff or the batch's clinic",
}


# --- checks the services refuse with --------------------------------------------------------------


def participation_words(types: frozenset[str]) -> str:
    """How someone took part, e.g. "you entered QC results and verified QC results"."""
    said = [words for kind, words in PARTICIPATION_WORDS.items() if kind in types]
    if types - set(PARTICIPATION_WORDS):
        said.insert(0, STEP_PARTICIPATION)
    return " and ".join(said)


def blockers_for(actor: Actor, facts: BatchFacts) -> list[Blocker]:
    """Every reason ``actor`` may not release now (R-REL-1), segregation of duties included."""
    took_part = facts.participation.get(actor.id, frozenset())
    found = release_blockers(
        facts.state,
        now=facts.now,
        required=list(facts.required),
        results=facts.views(),
        open_deviation_ids=list(facts.open_deviation_ids),
        releaser_took_part=bool(took_part),
    )
    if took_part:
        found = [
            Blocker(b.code, f"Another QA user must release: you {participation_words(took_part)} on this batch.")
            if b.code == "segregation_of_duties"
            else b
            for b in found
        ]
    return found


def check_release(actor: Actor, facts: BatchFacts) -> None:
    """R-REL-1: refused with every blocker at once."""
    found = blockers_for(actor, facts)
    if found:
        codes = ", ".join(b.code for b in found)
        raise ReleaseBlocked(
            f"Release refused: {len(found)} blocker(s): {codes}.", blockers=[b.as_dict() for b in found]
        )


def check_reject(state: BatchState) -> None:
    if state.status in TERMINAL:
        raise InvalidTransition(f"The batch is already {state.status.value}.", allowed=[])


def check_verify(actor: Actor, result: ResultFacts) -> None:
    """R-QC-3: a second person, not the one who entered the result, verifies it once."""
    if result.verified:
        raise Conflict("This result is already verified.")
    if result.entered_by_id == actor.id:
        raise Forbidden("A result is verified by a second person, not the one who entered it (R-QC-3).")


def check_qc_entry(state: BatchState, test: str, value: float | str, existing: list[float | str]) -> bool:
    """May a QC result be recorded now (R-QC-4, R-QC-5, R-CUS-2..3)? True for the sterility culture's final
    result, which the lab records whenever it comes, wherever the batch is; ``existing`` holds the values
    already recorded for ``test``."""
    if test == STERILITY and value != STERILITY_PENDING:
        if STERILITY_PENDING not in existing:
            raise InvalidTransition(
                "Record the sterility sample (value 'pending') before its final result.",
                allowed=allowed_actions(state),
            )
        if any(v != STERILITY_PENDING for v in existing):
            raise Conflict("The final sterility result is already recorded; correct it if it is wrong.")
        return True
    check_qc_panel(state)
    if existing:
        raise Conflict(f"A {test} result is already recorded; submit a correction to change it.")
    return False


def check_qc_panel(state: BatchState) -> None:
    """QC results (other than the final culture) are entered once processing is done, in lab custody."""
    if state.transfer is not None:
        raise CustodyViolation("A custody hand-off is pending: the recipient must receive the batch first.")
    if state.status not in QC_ENTRY_STATUSES:
        raise InvalidTransition(
            f"QC results are recorded once processing is done; the batch is {state.status.value.replace('_', ' ')}.",
            allowed=allowed_actions(state),
        )
    if state.custodian_side != Performer.LAB:
        raise CustodyViolation("QC results need the batch in lab custody.")


def check_label(status: Status, kind: str) -> None:
    """A product label only for a released batch; a collection label before the batch leaves the clinic."""
    if kind == LabelKind.PRODUCT and status not in READY_STATUSES:
        raise InvalidTransition(
            f"A product label is printed only for a released batch; the batch is {status.value.replace('_', ' ')}.",
            allowed=[f"label:{LabelKind.COLLECTION}"] if status in (Status.REGISTERED, Status.COLLECTED) else [],
        )
    if kind == LabelKind.COLLECTION and status not in (Status.REGISTERED, Status.COLLECTED):
        raise InvalidTransition("A collection label is printed before the batch leaves the clinic.", allowed=[])


# --- the decisions -------------------------------------------------------------------------------


def _refused(action: str, error: DomainError, by: str, subject: int | None = None) -> Decision:
    return Decision(action, False, error.detail, by, error.code, subject=subject)


def _role(action: str, actor: Actor, needed: Action, clinic_id: int, who: str, subject: int | None = None):
    if can(actor, needed, clinic_id):
        return None
    return Decision(action, False, f"This is done by {who}.", who, "forbidden", subject=subject)


def _checked(action: str, check: Callable[[], Any], by: str, warning: str = "", subject: int | None = None):
    try:
        check()
    except DomainError as error:
        return _refused(action, error, by, subject)
    return Decision(action, True, warning=warning, subject=subject)


def sod_warning(actor: Actor, facts: BatchFacts) -> str:
    """Said before QA takes part in a batch that is still to be released (R-REL-1)."""
    if actor.role != Role.QA or facts.state.status not in BEFORE_RELEASE or facts.participation.get(actor.id):
        return ""
    return "If you do this, another QA user must release this batch."


def decide_step(actor: Actor, facts: BatchFacts, name: str) -> Decision:
    state = facts.state
    definition = state.process.step(name)
    clinic_step = definition is not None and definition.performer == Performer.CLINIC
    key = name if clinic_step else "lab_step"
    needed = Action.LOG_CLINIC_STEP if clinic_step else Action.LOG_LAB_STEP
    refused = _role(name, actor, needed, state.clinic_id, WHO[key])
    if refused:
        return refused
    warning = "" if clinic_step else sod_warning(actor, facts)
    return _checked(name, lambda: check_step(state, name, now=facts.now), WHO[key], warning)


def decide_handoff(actor: Actor, facts: BatchFacts) -> Decision:
    holder = f"the custodian, {facts.custodian_name}" if facts.custodian_name else "the custodian"
    refused = _role("handoff", actor, Action.CUSTODY, facts.state.clinic_id, holder)
    return refused or _checked("handoff", lambda: check_hand_off_by(facts.state, actor), holder)


def decide_receipt(actor: Actor, facts: BatchFacts) -> Decision:
    named = f"{facts.recipient_name}, named in the hand-off" if facts.recipient_name else "the named recipient"
    refused = _role("receipt", actor, Action.CUSTODY, facts.state.clinic_id, named)
    return refused or _checked("receipt", lambda: check_receipt(facts.state, actor), named)


def decide_qc(actor: Actor, facts: BatchFacts) -> Decision:
    refused = _role("qc", actor, Action.QC_ENTRY, facts.state.clinic_id, WHO["qc"])
    return refused or _checked("qc", lambda: check_qc_panel(facts.state), WHO["qc"], sod_warning(actor, facts))


def decide_verify(actor: Actor, facts: BatchFacts, result: ResultFacts) -> Decision:
    action = "verify"
    refused = _role(action, actor, Action.QC_VERIFY, facts.state.clinic_id, WHO["verify"], result.id)
    if refused:
        return refused
    if result.entered_by_id == actor.id and not result.verified:
        return Decision(
            action,
            False,
            "you entered this result.",
            "another technician or QA user",
            "forbidden",
            subject=result.id,
            must="verify it",
        )
    return _checked(action, lambda: check_verify(actor, result), "", sod_warning(actor, facts), result.id)


def decide_release(actor: Actor, facts: BatchFacts) -> Decision:
    refused = _role("release", actor, Action.RELEASE, facts.state.clinic_id, WHO["release"])
    if refused:
        return refused
    found = blockers_for(actor, facts)
    if not found:
        return Decision("release", True)
    if [b.code for b in found] == ["segregation_of_duties"]:
        took = participation_words(facts.participation.get(actor.id, frozenset()))
        return Decision(
            "release", False, f"you {took} on this batch.", "another QA user", "segregation_of_duties", must="release"
        )
    return Decision("release", False, " ".join(b.detail for b in found), "", "release_blocked")


def decide_reject(actor: Actor, facts: BatchFacts) -> Decision:
    refused = _role("reject", actor, Action.RELEASE, facts.state.clinic_id, WHO["reject"])
    return refused or _checked("reject", lambda: check_reject(facts.state), "")


def decide_dispose(actor: Actor, facts: BatchFacts, deviation_id: int) -> Decision:
    refused = _role("dispose", actor, Action.DISPOSITION, facts.state.clinic_id, WHO["dispose"], deviation_id)
    return refused or Decision("dispose", True, subject=deviation_id)


def decide_label(actor: Actor, facts: BatchFacts, kind: str) -> Decision:
    action = f"label:{kind}"
    refused = _role(action, actor, Action.PRINT_LABEL, facts.state.clinic_id, WHO["label"])
    return refused or _checked(action, lambda: check_label(facts.state.status, kind), "")


def decide(actor: Actor, facts: BatchFacts) -> list[Decision]:
    """Every action the batch has now, for ``actor``: allowed (perhaps with a warning) or refused with why.

    Process actions come first, in the process's order (R-SEQ-1); then the per-result verifications,
    per-deviation dispositions, rejection, deviations, labels and the record.
    """
    state = facts.state
    found: list[Decision] = []
    for name in allowed_actions(state):
        match name:
            case "handoff":
                found.append(decide_handoff(actor, facts))
            case "receipt":
                found.append(decide_receipt(actor, facts))
            case "qc":
                found.append(decide_qc(actor, facts))
            case "release":
                found.append(decide_release(actor, facts))
            case _:
                found.append(decide_step(actor, facts, name))
    if state.status in BEFORE_RELEASE - {Status.AWAITING_RELEASE}:
        found.append(decide_release(actor, facts))
    found.extend(decide_verify(actor, facts, r) for r in facts.results if not r.verified)
    found.extend(decide_dispose(actor, facts, i) for i in facts.open_deviation_ids)
    if state.status not in TERMINAL:
        found.append(decide_reject(actor, facts))
        deviation = _role("open_deviation", actor, Action.OPEN_DEVIATION, state.clinic_id, WHO["open_deviation"])
        found.append(deviation or Decision("open_deviation", True))
    found.extend(decide_label(actor, facts, kind) for kind in LabelKind)
    record = _role("record", actor, Action.READ_RECORD, state.clinic_id, WHO["record"])
    found.append(record or Decision("record", True))
    return found


def decision_for(decisions: list[Decision], action: str, subject: int | None = None) -> Decision | None:
    """The decision about ``action`` (on ``subject``: a QC result or deviation) among ``decisions``, if any."""
    return next((d for d in decisions if d.action == action and d.subject == subject), None)
