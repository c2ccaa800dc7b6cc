"""The DomainError hierarchy: every refusal carries its HTTP status and stable code.

One handler turns these into RFC 9457 problem+json for every adapter (API, web, CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"
    title = "Bad request"
    # A refusal that must itself be recorded (R-COI-1, R-SIG-1): the unit of work runs it, with a
    # session of its own, after rolling back the refused request (``labtrack.db.Database.write``).
    record: Callable[[Any], None] | None = None

    def __init__(
        self,
        detail: str,
        *,
        errors: dict[str, list[str]] | None = None,
        blockers: list[dict[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.blockers = blockers
        self.extra = extra or {}

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://labtrack.example/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        if self.blockers is not None:
            body["blockers"] = self.blockers
        body.update(self.extra)
        return body


class Unauthenticated(DomainError):
    status, code, title = 401, "unauthenticated", "Authentication required"


class InvalidCredentials(DomainError):
    status, code, title = 401, "invalid_credentials", "Invalid credentials"


class SignatureInvalid(DomainError):
    status, code, title = 401, "signature_invalid", "Signature invalid"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class PasswordChangeRequired(DomainError):
    """An admin reset the password: the user chooses a new one before signing in (pages and API)."""

    status, code, title = 403, "password_change_required", "Password change required"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class AccountLocked(DomainError):
    status, code, title = 423, "account_locked", "Account locked"


class RateLimited(DomainError):
    """Too many sign-in attempts from one address or for one username (``labtrack.security``)."""

    status, code, title = 429, "rate_limited", "Too many requests"


class ValidationFailed(DomainError):
    status, code, title = 422, "validation_error", "Validation error"

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None) -> None:
        summary = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        super().__init__(detail or summary or "The request is not valid.", errors=errors)


class InvalidDin(DomainError):
    status, code, title = 422, "invalid_din", "Invalid DIN"


class IdentityMismatch(DomainError):
    """Chain of identity broken: the refusal itself is recorded on the batch (R-COI-1)."""

    status, code, title = 422, "identity_mismatch", "Identity mismatch"

    def __init__(self, detail: str, *, attempt: dict[str, Any]) -> None:
        super().__init__(detail)
        self.attempt = attempt


class ReagentNotUsable(DomainError):
    status, code, title = 422, "reagent_not_usable", "Reagent lot not usable"


class EquipmentNotUsable(DomainError):
    status, code, title = 422, "equipment_not_usable", "Equipment not usable"


class IdempotencyKeyReused(DomainError):
    status, code, title = 422, "idempotency_key_reused", "Idempotency key reused"


class InvalidTransition(DomainError):
    status, code, title = 409, "invalid_transition", "Invalid transition"

    def __init__(self, detail: str, *, allowed: list[str]) -> None:
        super().__init__(detail, extra={"allowed_actions": allowed})


class CustodyViolation(DomainError):
    status, code, title = 409, "custody_violation", "Custody violation"


class NotAdministered(DomainError):
    """An adverse reaction is reported only on a batch that was administered (R-ADV-1)."""

    status, code, title = 409, "not_administered", "Not administered"


class BatchHeld(DomainError):
    status, code, title = 409, "batch_held", "Batch held"


class ReleaseBlocked(DomainError):
    status, code, title = 409, "release_blocked", "Release blocked"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class Unavailable(DomainError):
    status, code, title = 503, "unavailable", "Service unavailable"
