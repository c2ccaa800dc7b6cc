"""The batch state machine and chain of custody (R-SEQ-1, R-CUS-1..3).

The stateful test drives random steps, hand-offs and receipts against ``BatchState``
snapshots, keeping its own model of the batch written from docs/requirements.md (step order per
tissue source, who holds the batch, which status follows), and checks every
answer of check_step / check_handoff / check_receipt against that model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from labtrack.domain.actors import Actor, Role
from labtrack.domain.errors import BatchHeld, CustodyViolation, DomainError, InvalidTransition, ValidationFailed
from labtrack.domain.lifecycle import (
    BatchState,
    PendingTransfer,
    Status,
    allowed_actions,
    check_handoff,
    check_receipt,
    check_recipient,
    check_step,
    side_of,
)
from labtrack.domain.process import Performer, TissueSource

CLINIC_ID, OTHER_CLINIC_ID = 1, 2
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
USERS = {
    actor.username: actor
    for actor in (
        Actor(1, "clinic", "Clara Clinic", Role.CLINIC, CLINIC_ID),
        Actor(2, "clinic_b", "Bea Clinic", Role.CLINIC, CLINIC_ID),
        Actor(3, "other", "Otto Other", Role.CLINIC, OTHER_CLINIC_ID),
        Actor(10, "tech", "Tom Tech", Role.TECHNICIAN, None),
        Actor(11, "tech2", "Tina Tech", Role.TECHNICIAN, None),
        Actor(12, "qa", "Quinn QA", Role.QA, None),
        Actor(20, "admin", "Ada Admin", Role.ADMIN, None),
    )
}
CLINIC_STAFF = ("clinic", "clinic_b")  # the batch's clinic
LAB_STAFF = ("tech", "tech2", "qa")

# requirements §2 "Process definitions": the order of steps per tissue source.
ORDER = {
    TissueSource.ADIPOSE: ("harvest", "digestion", "isolation", "concentration", "administration"),
    TissueSource.BONE_MARROW: ("harvest", "separation", "concentration", "administration"),
}
LAB_STEPS = frozenset({"digestion", "isolation", "separation", "concentration"})
ALL_STEPS = tuple(dict.fromkeys(ORDER[TissueSource.ADIPOSE] + ORDER[TissueSource.BONE_MARROW]))
# The status a step needs: harvest first, lab steps after lab receipt, administration after clinic receipt.
STEP_NEEDS = {"harvest": {"registered"}, "administration": {"delivered"}} | {
    name: {"received", "processing"} for name in LAB_STEPS
}
# The only hand-offs across sides: the collected product to the lab, the released product to the clinic.
CROSSING = {("clinic", "collected"): "in_transit", ("lab", "released"): "dispatched"}
ARRIVAL = {"in_transit": "received", "dispatched": "delivered"}


def side(username: str) -> str:
    return "clinic" if USERS[username].role == Role.CLINIC else "lab"


@dataclass
class Transfer:
    sender: str
    recipient: str
    seal_id: str
    status_before: str


class BatchModel:
    """The batch as docs/requirements.md describes it, kept by the test independently of labtrack.domain."""

    def __init__(self, tissue: TissueSource) -> None:
        self.tissue = tissue
        self.status = "registered"
        self.steps: list[str] = []
        self.custodian: str | None = None
        self.transfer: Transfer | None = None
        self.held = False

    @property
    def terminal(self) -> bool:
        return self.status == "administered"

    def next_step(self) -> str | None:
        order = ORDER[self.tissue]
        return order[len(self.steps)] if len(self.steps) < len(order) else None

    def step_in_order(self, name: str) -> bool:
        return name == self.next_step() and self.status in STEP_NEEDS[name]

    def snapshot(self) -> BatchState:
        """What lifecycle.state_of builds from the batch's row."""
        transfer = None
        if self.transfer is not None:
            transfer = PendingTransfer(
                from_user_id=USERS[self.transfer.sender].id,
                to_user_id=USERS[self.transfer.recipient].id,
                to_side=side_of(USERS[self.transfer.recipient].role),
                seal_id=self.transfer.seal_id,
                status_before=Status(self.transfer.status_before),
            )
        custodian = USERS[self.custodian] if self.custodian else None
        return BatchState(
            status=Status(self.status),
            tissue_source=self.tissue,
            clinic_id=CLINIC_ID,
            steps_done=tuple(self.steps),
            custodian_id=custodian.id if custodian else None,
            custodian_side=side_of(custodian.role) if custodian else None,
            transfer=transfer,
            held=self.held,
        )

    def expect_step(self, name: str, actor: str) -> type[DomainError] | str:
        """The refusal the requirements ask for, or the status after the step."""
        if self.transfer is not None:
            return CustodyViolation  # R-CUS-2
        if name in LAB_STEPS and name == self.next_step() and side(self.custodian) == "clinic":
            return CustodyViolation  # R-CUS-3: the next step is due, but the clinic still holds the product
        if name not in ORDER[self.tissue] or not self.step_in_order(name):
            return InvalidTransition  # R-SEQ-1
        if name in LAB_STEPS and side(self.custodian) != "lab":
            return CustodyViolation  # R-CUS-3
        if name == "administration":
            if side(self.custodian) != "clinic":
                return CustodyViolation  # R-CUS-3: custody at the batch's clinic
            if self.held:
                return BatchHeld  # R-DEV-1
            return "administered"
        if name == "harvest":
            return "collected"
        last_lab_step = [s for s in ORDER[self.tissue] if s in LAB_STEPS][-1]
        return "processed" if name == last_lab_step else "processing"

    def expect_handoff(self, actor: str, recipient: str) -> type[DomainError] | str:
        if self.terminal or self.custodian is None:
            return InvalidTransition
        if self.transfer is not None:
            return CustodyViolation  # one hand-off at a time
        if actor != self.custodian:
            return CustodyViolation  # R-CUS-1: only the custodian hands off
        recipient_user = USERS[recipient]
        if recipient == actor or recipient_user.role == Role.ADMIN or recipient_user.clinic_id == OTHER_CLINIC_ID:
            return ValidationFailed
        if side(actor) == side(recipient):
            return self.status
        crossed = CROSSING.get((side(actor), self.status))
        if crossed is None:
            return InvalidTransition
        if crossed == "dispatched" and self.held:
            return BatchHeld  # R-DEV-1
        return crossed

    def expect_receipt(self, actor: str) -> type[DomainError] | str:
        if self.transfer is None:
            return InvalidTransition
        if actor != self.transfer.recipient:
            return CustodyViolation  # R-CUS-1: only the named recipient receives
        return ARRIVAL.get(self.status, self.status)


def performer(step: str, who: int) -> str:
    """Clinic steps by staff of the batch's clinic, lab steps by technicians: the roles the requirements allow."""
    return CLINIC_STAFF[who] if step in ("harvest", "administration") else ("tech", "tech2")[who]


def outcome(decide) -> DomainError | str:
    """The refusal, or the status a check_* function returned."""
    try:
        result = decide()
    except DomainError as refused:
        return refused
    return (result[1] if isinstance(result, tuple) else result).value


def kind(got: DomainError | str) -> type[DomainError] | str:
    return type(got) if isinstance(got, DomainError) else got


class LifecycleMachine(RuleBasedStateMachine):
    @initialize(tissue=st.sampled_from(TissueSource))
    def register(self, tissue: TissueSource) -> None:
        self.batch = BatchModel(tissue)
        self.accepted_steps: list[tuple[str, str | None, bool]] = []  # (step, custodian, transfer pending)

    def _step(self, name: str, actor: str) -> None:
        model = self.batch
        state = model.snapshot()
        expected = model.expect_step(name, actor)
        got = outcome(lambda: check_step(state, name, now=NOW))
        assert kind(got) == expected, (name, actor, got)
        if isinstance(got, InvalidTransition):
            assert got.extra["allowed_actions"] == allowed_actions(state)
            assert name not in got.extra["allowed_actions"]
        if isinstance(got, DomainError):
            return
        self.accepted_steps.append((name, model.custodian, model.transfer is not None))
        model.steps.append(name)
        model.status = expected
        if name == "harvest":
            model.custodian = actor  # R-CUS-3: custody starts with the harvesting clinic user

    @rule(name=st.sampled_from(ALL_STEPS), who=st.integers(min_value=0, max_value=1))
    def any_step(self, name: str, who: int) -> None:
        self._step(name, performer(name, who))

    def _handoff(self, actor: str, recipient: str, seal_id: str) -> None:
        model = self.batch
        expected = model.expect_handoff(actor, recipient)
        got = outcome(lambda: check_handoff(model.snapshot(), USERS[actor], USERS[recipient], at=NOW))
        assert kind(got) == expected, (actor, recipient, model.status, got)
        if isinstance(got, str):
            model.transfer = Transfer(actor, recipient, seal_id, model.status)
            model.status = got

    @rule(actor=st.sampled_from(sorted(USERS)), recipient=st.sampled_from(sorted(USERS)), seal=st.integers(1, 3))
    def any_handoff(self, actor: str, recipient: str, seal: int) -> None:
        self._handoff(actor, recipient, f"SEAL-{seal}")

    def _receive(self, actor: str) -> None:
        model = self.batch
        expected = model.expect_receipt(actor)
        got = outcome(lambda: check_receipt(model.snapshot(), USERS[actor]))
        assert kind(got) == expected, (actor, model.status, got)
        if isinstance(got, str):
            model.custodian = actor  # custody passes at receipt, never at hand-off
            model.transfer = None
            model.status = got

    @rule(actor=st.sampled_from(sorted(USERS)))
    def any_receipt(self, actor: str) -> None:
        self._receive(actor)

    @rule(held=st.booleans())
    def deviation(self, held: bool) -> None:
        self.batch.held = held  # R-DEV-1: an open deviation holds the batch

    @rule(who=st.integers(min_value=0, max_value=2))
    def advance(self, who: int) -> None:
        """What the requirements say comes next, so that random runs also get through to administration."""
        model = self.batch
        name = model.next_step()
        if model.transfer is not None:
            self._receive(model.transfer.recipient)
        elif name is not None and model.step_in_order(name):
            self._step(name, performer(name, who % 2))
        elif model.status == "collected":
            self._handoff(model.custodian, LAB_STAFF[who], "SEAL-1")
        elif model.status == "released":
            self._handoff(model.custodian, CLINIC_STAFF[who % 2], "SEAL-2")
        # QC and release are decided elsewhere (R-QC, R-REL); here they only move the status on.
        elif model.status == "processed":
            model.status = "awaiting_release"
        elif model.status == "awaiting_release" and not model.held:
            model.status = "released"

    @invariant()
    def r_seq_1_steps_done_are_a_prefix_of_the_process(self) -> None:
        steps = tuple(self.batch.steps)
        assert steps == ORDER[self.batch.tissue][: len(steps)]

    @invariant()
    def r_cus_1_exactly_one_custodian_from_harvest_on(self) -> None:
        model = self.batch
        state = model.snapshot()
        if not model.steps:
            assert state.custodian_id is None
        else:
            assert state.custodian_id is not None
            assert state.custodian_side == side_of(USERS[model.custodian].role)
        if model.transfer is not None:
            # The sender keeps custody until the named recipient receives.
            assert model.transfer.sender == model.custodian
            assert allowed_actions(state) == ["receipt"]

    @invariant()
    def r_cus_2_no_step_recorded_while_a_transfer_is_pending(self) -> None:
        assert not any(pending for _, _, pending in self.accepted_steps)

    @invariant()
    def r_cus_3_lab_steps_only_in_lab_custody(self) -> None:
        for name, custodian, _ in self.accepted_steps:
            assert (name in LAB_STEPS) == (side(custodian) == "lab" if custodian else False)
        if self.batch.status in ("received", "processing", "processed", "awaiting_release", "released"):
            assert side(self.batch.custodian) == "lab"
        if self.batch.status in ("collected", "delivered", "administered"):
            assert side(self.batch.custodian) == "clinic"

    @invariant()
    def r_seq_1_allowed_actions_match_the_model(self) -> None:
        model = self.batch
        allowed = allowed_actions(model.snapshot())
        for name in ALL_STEPS:
            expected = model.transfer is None and name in ORDER[model.tissue] and model.step_in_order(name)
            assert (name in allowed) == expected, (name, allowed)
        assert ("receipt" in allowed) == (model.transfer is not None)
        can_hand_off = model.custodian is not None and model.transfer is None and not model.terminal
        assert ("handoff" in allowed) == can_hand_off


TestLifecycle = LifecycleMachine.TestCase
TestLifecycle.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


TECH, CLINIC_USER = USERS["tech"], USERS["clinic"]


def _state(status: Status, tissue: TissueSource = TissueSource.ADIPOSE, **fields) -> BatchState:
    custodian = CLINIC_USER if status in (Status.COLLECTED, Status.DELIVERED) else TECH
    defaults = {
        "steps_done": (),
        "custodian_id": None if status == Status.REGISTERED else custodian.id,
        "custodian_side": None if status == Status.REGISTERED else side_of(custodian.role),
    }
    return BatchState(status=status, tissue_source=tissue, clinic_id=CLINIC_ID, **(defaults | fields))


@pytest.mark.parametrize(
    ("state", "allowed"),
    [
        (_state(Status.REGISTERED), ["harvest"]),
        (_state(Status.COLLECTED, steps_done=("harvest",)), ["handoff"]),
        (_state(Status.RECEIVED, steps_done=("harvest",)), ["digestion", "handoff"]),
        (_state(Status.RECEIVED, TissueSource.BONE_MARROW, steps_done=("harvest",)), ["separation", "handoff"]),
        (_state(Status.PROCESSING, steps_done=("harvest", "digestion")), ["isolation", "handoff"]),
        (_state(Status.PROCESSING, steps_done=("harvest", "digestion", "isolation")), ["concentration", "handoff"]),
        (
            _state(Status.PROCESSED, steps_done=("harvest", "digestion", "isolation", "concentration")),
            ["qc", "handoff"],
        ),
        (_state(Status.AWAITING_RELEASE), ["release", "handoff"]),
        (_state(Status.RELEASED), ["handoff"]),
        (_state(Status.DELIVERED), ["administration", "handoff"]),
        (
            _state(
                Status.IN_TRANSIT,
                steps_done=("harvest",),
                transfer=PendingTransfer(CLINIC_USER.id, TECH.id, Performer.LAB, "SEAL-1", Status.COLLECTED),
            ),
            ["receipt"],
        ),
        (_state(Status.ADMINISTERED), []),
        (_state(Status.REJECTED), []),
        (_state(Status.EXPIRED), []),
        (_state(Status.DISCARDED), []),
    ],
    ids=lambda value: value.status.value if isinstance(value, BatchState) else None,
)
def test_r_seq_1_allowed_actions_per_status(state, allowed):
    assert allowed_actions(state) == allowed


def test_r_seq_1_step_out_of_order_lists_allowed_actions():
    state = _state(Status.RECEIVED, steps_done=("harvest",))
    with pytest.raises(InvalidTransition) as refused:
        check_step(state, "concentration", now=NOW)
    problem = refused.value.to_problem()
    assert (problem["status"], problem["code"]) == (409, "invalid_transition")
    assert problem["allowed_actions"] == ["digestion", "handoff"]
    assert "digestion, handoff" in problem["detail"]


def test_r_seq_1_repeated_step_is_refused():
    state = _state(Status.COLLECTED, steps_done=("harvest",))
    with pytest.raises(InvalidTransition) as refused:
        check_step(state, "harvest", now=NOW)
    assert refused.value.extra["allowed_actions"] == ["handoff"]


@pytest.mark.parametrize(
    ("tissue", "foreign_step", "allowed"),
    [
        (TissueSource.ADIPOSE, "separation", ["digestion", "handoff"]),
        (TissueSource.BONE_MARROW, "digestion", ["separation", "handoff"]),
        (TissueSource.BONE_MARROW, "isolation", ["separation", "handoff"]),
    ],
)
def test_r_seq_1_step_of_the_other_tissue_source_is_refused(tissue, foreign_step, allowed):
    state = _state(Status.RECEIVED, tissue, steps_done=("harvest",))
    with pytest.raises(InvalidTransition) as refused:
        check_step(state, foreign_step, now=NOW)
    assert refused.value.extra["allowed_actions"] == allowed


def test_r_seq_1_last_lab_step_makes_the_batch_processed():
    state = _state(Status.PROCESSING, TissueSource.BONE_MARROW, steps_done=("harvest", "separation"))
    step, status = check_step(state, "concentration", now=NOW)
    assert (step.name, status) == ("concentration", Status.PROCESSED)


def test_r_cus_2_no_step_while_a_hand_off_is_pending():
    transfer = PendingTransfer(TECH.id, USERS["tech2"].id, Performer.LAB, "SEAL-1", Status.RECEIVED)
    state = _state(Status.RECEIVED, steps_done=("harvest",), transfer=transfer)
    with pytest.raises(CustodyViolation) as refused:
        check_step(state, "digestion", now=NOW)
    assert (refused.value.status, refused.value.code) == (409, "custody_violation")


def test_r_cus_3_lab_step_before_lab_receipt_is_a_custody_violation():
    with pytest.raises(CustodyViolation):
        check_step(_state(Status.COLLECTED, steps_done=("harvest",)), "digestion", now=NOW)


def test_r_cus_3_administration_needs_custody_at_the_clinic():
    done = ("harvest", "digestion", "isolation", "concentration")
    delivered = _state(Status.DELIVERED, steps_done=done)
    step, status = check_step(delivered, "administration", now=NOW)  # a colleague holds it
    assert (step.name, status) == ("administration", Status.ADMINISTERED)
    with pytest.raises(BatchHeld):
        check_step(replace(delivered, held=True), "administration", now=NOW)


def test_r_cus_1_only_the_custodian_hands_off_and_only_the_named_user_receives():
    collected = _state(Status.COLLECTED, steps_done=("harvest",))
    with pytest.raises(CustodyViolation):
        check_handoff(collected, USERS["clinic_b"], TECH, at=NOW)
    assert check_handoff(collected, CLINIC_USER, TECH, at=NOW) == Status.IN_TRANSIT
    in_transit = replace(
        collected,
        status=Status.IN_TRANSIT,
        transfer=PendingTransfer(CLINIC_USER.id, TECH.id, Performer.LAB, "SEAL-1", Status.COLLECTED),
    )
    with pytest.raises(CustodyViolation):
        check_receipt(in_transit, USERS["tech2"])
    assert check_receipt(in_transit, TECH) == Status.RECEIVED


DONE = ("harvest", "digestion", "isolation", "concentration")


def test_r_seq_3_an_expired_product_is_not_administered():
    delivered = _state(Status.DELIVERED, steps_done=DONE, expires_at=NOW)
    _step, status = check_step(delivered, "administration", now=NOW - timedelta(seconds=1))
    assert status == Status.ADMINISTERED
    with pytest.raises(InvalidTransition) as refused:
        check_step(delivered, "administration", now=NOW)
    assert "expired" in refused.value.detail
    assert refused.value.extra["allowed_actions"] == []
    with pytest.raises(InvalidTransition):  # marked expired by the watcher: nothing is next
        check_step(replace(delivered, status=Status.EXPIRED), "administration", now=NOW - timedelta(hours=1))


def test_r_seq_3_an_expired_product_is_not_dispatched_and_custody_inside_the_lab_goes_on():
    released = _state(Status.RELEASED, steps_done=DONE, expires_at=NOW)
    assert check_handoff(released, TECH, CLINIC_USER, at=NOW - timedelta(seconds=1)) == Status.DISPATCHED
    with pytest.raises(InvalidTransition) as refused:
        check_handoff(released, TECH, CLINIC_USER, at=NOW)
    assert "expired" in refused.value.detail
    assert refused.value.extra["allowed_actions"] == ["handoff"]
    assert check_handoff(released, TECH, USERS["tech2"], at=NOW) == Status.RELEASED  # the lab keeps it


def test_r_cus_1_the_recipient_is_someone_else_of_the_lab_or_of_the_batchs_clinic():
    received = _state(Status.RECEIVED, steps_done=("harvest",))
    for name in ("tech2", "qa", "clinic", "clinic_b"):
        check_recipient(received, TECH, USERS[name])
    for name, field_message in (
        ("tech", "cannot hand a batch off to yourself"),
        ("admin", "admins hold no batch authority and cannot take custody"),
        ("other", "belongs to another clinic than the batch"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            check_recipient(received, TECH, USERS[name])
        assert refused.value.errors == {"to_username": [field_message]}
