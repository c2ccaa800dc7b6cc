"""From HTML forms to service calls, and from refusals back to the fields they concern.

HTML sends text; the API's input schemas (``labtrack.api.schemas``) check the shape
of the same requests, so pages load their forms with those schemas and refuse
with the same messages. Step data is typed by the process definition's field kinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, current_app, flash, redirect, request
from marshmallow import Schema, ValidationError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from labtrack.domain.errors import DomainError, IdentityMismatch, ValidationFailed
from labtrack.domain.process import FieldKind, StepDefinition

# Refusals without field messages, placed beside the field whose value the rule refused.
CODE_FIELDS = {
    "identity_mismatch": "scanned_din",
    "invalid_din": "scanned_din",
    "reagent_not_usable": "reagent_lots",
    "equipment_not_usable": "equipment",
    "signature_invalid": "signature.password",
    "account_locked": "signature.password",
}
INTEGER = re.compile(r"^[+-]?\d+$")


def zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["LABTRACK_TIMEZONE"])


@dataclass
class Failure:
    """A refused form: which form, the rule's messages per field, and what was typed (to show it again)."""

    form: str
    status: int = 200
    detail: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    blockers: list[dict[str, str]] = field(default_factory=list)
    values: MultiDict = field(default_factory=MultiDict)

    @classmethod
    def of(cls, error: DomainError, form: str, *, field: str | None = None) -> Failure:
        fields = dict(error.errors or {})
        if not fields:
            if isinstance(error, IdentityMismatch) and error.attempt.get("check") == "patient":
                fields = {f"data.{name}": [error.detail] for name in error.attempt.get("mismatched", [])}
            elif (name := field or CODE_FIELDS.get(error.code)) is not None:
                fields = {name: [error.detail]}
        values = MultiDict((k, v) for k, v in request.values.items(multi=True) if "password" not in k)
        return cls(form, error.status, error.detail, fields, list(error.blockers or []), values)

    def here(self, form: str) -> bool:
        return self.form == form

    def errors(self, form: str, name: str) -> list[str]:
        return self.fields.get(name, []) if self.here(form) else []

    def value(self, form: str, name: str, default: Any = "") -> Any:
        return self.values.get(name, default) if self.here(form) else default

    def chosen(self, form: str, name: str) -> list[str]:
        """The options the refused form had picked in ``name`` (a multiple choice), to show them again."""
        return self.values.getlist(name) if self.here(form) else []

    def summary(self, form: str) -> str | None:
        """The message at the top of the refused form; field messages stand beside their fields."""
        if not self.here(form):
            return None
        return "Not recorded: see the messages beside the fields." if self.fields else self.detail


NO_FAILURE = Failure(form="")


@dataclass(frozen=True)
class Recorded:
    """What a recorded form says: good news in green (``success``), recorded-but-bad news never so
    (``warning``: a deviation opened, a result out of specification)."""

    message: str
    tone: str = "success"


def flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as ``{"signature.password": [...]}``."""
    if isinstance(messages, dict):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "form": list(messages)}
    return {prefix or "form": [str(messages)]}


def load_form(schema: Schema, payload: dict[str, Any]) -> dict[str, Any]:
    """Check a request's shape with the API's schema; its messages become field messages."""
    try:
        return schema.load(payload)
    except ValidationError as error:
        raise ValidationFailed(flatten(error.messages)) from None


def given(form: MultiDict, *names: str) -> dict[str, str]:
    """The named fields that were filled in; empty ones are left out so the schema's defaults apply."""
    return {name: form[name].strip() for name in names if form.get(name, "").strip()}


def aware(text: str) -> str:
    """A ``datetime-local`` value, read in the lab's time zone, as ISO 8601 with offset.

    Unparsable text is passed on as it is, for the schema or the rule to refuse.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone())).isoformat()


def parse_number(text: str) -> int | float | str:
    """A number from text (decimal comma accepted); text that is no number is passed on for the rule to refuse."""
    cleaned = text.strip().replace(",", ".")
    try:
        return int(cleaned) if INTEGER.match(cleaned) else float(cleaned)
    except ValueError:
        return text


def in_hand_fields(form: MultiDict) -> dict[str, str]:
    """The fields of every write made with the product in hand (R-COI-1), late entries (R-SEQ-2) included."""
    body = given(form, "scanned_din", "late_entry_reason")
    if form.get("occurred_at", "").strip():
        body["occurred_at"] = aware(form["occurred_at"].strip())
    return body


def step_data(step: StepDefinition, form: MultiDict) -> dict[str, Any]:
    """A step's data fields (``data.<name>``), typed by the process definition; the rules check the values."""
    data: dict[str, Any] = {}
    for spec in step.fields:
        raw = form.get(f"data.{spec.name}", "").strip()
        if not raw:
            continue
        match spec.kind:
            case FieldKind.NUMBER | FieldKind.INTEGER:
                data[spec.name] = parse_number(raw)
            case FieldKind.DATETIME:
                data[spec.name] = aware(raw)
            case FieldKind.TEXT_LIST:
                data[spec.name] = [part.strip() for part in re.split(r"[,;\n]", raw) if part.strip()]
            case _:
                data[spec.name] = raw
    return data


def respond(actions: dict[str, Callable[[MultiDict], str | Recorded | Response]], render: Callable[[Failure], str]):
    """Post, then redirect, then get: a form names its ``action``; success flashes and redirects back,
    a refusal renders the page again with the rule's messages beside the fields (status of the refusal)."""
    failure = NO_FAILURE
    if request.method == "POST":
        action = request.form.get("action", "")
        if action not in actions:
            raise BadRequest("This form names no known action.")
        try:
            outcome = actions[action](request.form)
        except DomainError as error:
            failure = Failure.of(error, request.form.get("form_id") or action)
        else:
            if isinstance(outcome, Response):
                return outcome
            said = outcome if isinstance(outcome, Recorded) else Recorded(outcome)
            flash(said.message, said.tone)
            return redirect(request.full_path if request.query_string else request.path, 303)
    return render(failure), failure.status
