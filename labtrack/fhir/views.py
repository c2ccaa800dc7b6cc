"""The /fhir views: thin adapters over ``labtrack.services.fhir``."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Response, current_app, json, request
from flask_smorest import Blueprint
from marshmallow import INCLUDE, Schema, fields

from labtrack.api.common import actor, authenticate, read_session
from labtrack.clock import utcnow
from labtrack.documents import fhir as resources
from labtrack.domain.errors import DomainError, ValidationFailed
from labtrack.services import fhir

blp = Blueprint(
    "fhir",
    __name__,
    description="FHIR R5, read-only (application/fhir+json): batches as BiologicallyDerivedProduct, dispatches as "
    "BiologicallyDerivedProductDispense. Refusals are OperationOutcome resources.",
)
View = TypeVar("View", bound=Callable[..., Any])
ANSWERED = ("application/fhir+json", "application/json")
FORMATS = ("json", "application/json", "application/fhir+json")
PUBLIC = ("fhir.metadata",)


class NotAcceptable(DomainError):
    status, code, title = 406, "not_acceptable", "Not acceptable"


class ResourceSchema(Schema):
    """A FHIR resource (documented by its type; the profile is FHIR R5's)."""

    class Meta:
        unknown = INCLUDE

    resourceType = fields.String(required=True)
    id = fields.String()


class OperationOutcomeSchema(Schema):
    class Meta:
        unknown = INCLUDE

    resourceType = fields.String(required=True, metadata={"enum": ["OperationOutcome"]})
    issue = fields.List(fields.Dict(), required=True)


def outcomes(*statuses: int) -> Callable[[View], View]:
    """Document the OperationOutcome answers of a view (always 406 and 503; 401 for the authenticated ones)."""

    def document(view: View) -> View:
        for status in sorted({406, 503, *statuses}, reverse=True):
            view = blp.alt_response(
                status,
                schema=OperationOutcomeSchema,
                content_type=resources.FHIR_JSON,
                description=HTTPStatus(status).phrase,
            )(view)
        return view

    return document


def _query_parameter(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"in": "query", "name": name, "required": False, "schema": {"type": kind}, "description": description}


FORMAT_PARAMETER = _query_parameter("_format", "json, application/json or application/fhir+json")
COUNT_PARAMETER = {
    "in": "query", "name": "_count", "required": False, "description": "Page size (default 50)",
    "schema": {"type": "integer", "minimum": 1, "maximum": fhir.MAX_COUNT},
}  # fmt: skip


@blp.before_request
def negotiate_and_authenticate() -> None:
    """JSON only (406 otherwise); every read but the CapabilityStatement needs the API's bearer token."""
    wanted = request.args.get("_format")
    if wanted is not None and wanted not in FORMATS:
        raise NotAcceptable("This server speaks FHIR JSON only: _format=json.")
    accept = request.accept_mimetypes
    if wanted is None and accept.provided and accept.best_match(ANSWERED) is None:
        raise NotAcceptable("This server answers application/fhir+json only.")
    if request.endpoint not in PUBLIC:
        authenticate()


def _fhir(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), mimetype=resources.FHIR_JSON)


def _base() -> str:
    return request.url_root.rstrip("/") + "/fhir"


def _facility() -> str:
    return current_app.config["LABTRACK_FIN"]


def _args(allowed: tuple[str, ...]) -> dict[str, str]:
    """The search parameters, each at most once; an unknown one is refused (strict handling), not ignored."""
    unknown = sorted(set(request.args) - set(allowed) - {"_format"})
    errors = {name: ["is not a search parameter of this resource here"] for name in unknown}
    errors |= {name: ["give it once"] for name in request.args if len(request.args.getlist(name)) > 1}
    if errors:
        raise ValidationFailed(errors)
    return {name: value for name, value in request.args.items() if name != "_format"}


def _count(args: dict[str, str]) -> int:
    text = args.get("_count", "50")
    if not text.isdigit() or not 1 <= int(text) <= fhir.MAX_COUNT:
        raise ValidationFailed({"_count": [f"must be a whole number from 1 to {fhir.MAX_COUNT}"]})
    return int(text)


@blp.get("/metadata")
@blp.doc(parameters=[FORMAT_PARAMETER], security=[])
@blp.response(200, ResourceSchema, content_type=resources.FHIR_JSON, description="The CapabilityStatement")
@outcomes(422)
def metadata():
    """The CapabilityStatement: what this FHIR server does (public, as FHIR servers publish it)."""
    _args(())
    return _fhir(resources.capability_statement(_base(), "1", utcnow()))


@blp.get("/BiologicallyDerivedProduct/<string:din>")
@blp.doc(parameters=[FORMAT_PARAMETER])
@blp.response(200, ResourceSchema, content_type=resources.FHIR_JSON, description="The BiologicallyDerivedProduct")
@outcomes(401, 404, 422)
def read_product(din: str):
    """One product by its DIN (any printed form); another clinic's product is 404, as a missing one."""
    _args(())
    return _fhir(fhir.read_product(read_session(), actor(), din, _facility()))


PRODUCT_SEARCH = ("patient.identifier", "identifier", "biological-source-event", "product-status", "_count", "_cursor")


@blp.get("/BiologicallyDerivedProduct")
@blp.doc(
    parameters=[
        _query_parameter(name, words)
        for name, _kind, words in resources.SEARCH_PARAMETERS["BiologicallyDerivedProduct"]
    ]
    + [COUNT_PARAMETER, _query_parameter("_cursor", "From the Bundle's next link"), FORMAT_PARAMETER]
)
@blp.response(200, ResourceSchema, content_type=resources.FHIR_JSON, description="A searchset Bundle")
@outcomes(401, 403, 422)
def search_products():
    """A patient's products (`patient.identifier=MRN` or `system|MRN`), or a DIN's, as a searchset Bundle."""
    args = _args(PRODUCT_SEARCH)
    status = args.get("product-status")
    if status is not None and status not in resources.STATUSES:
        raise ValidationFailed({"product-status": ["available or unavailable"]})
    cursor = args.get("_cursor")
    if cursor is not None and not cursor.isdigit():
        raise ValidationFailed({"_cursor": ["use the Bundle's next link as it is"]})
    identifier = args.get("identifier") or args.get("biological-source-event")
    search = fhir.ProductSearch(
        patient=fhir.Token.parse(args["patient.identifier"], "patient.identifier")
        if "patient.identifier" in args
        else None,
        identifier=fhir.Token.parse(identifier, "identifier") if identifier is not None else None,
        status=status,
        count=_count(args),
        cursor=int(cursor) if cursor is not None else None,
    )
    found, after = fhir.search_products(read_session(), actor(), search, _facility())
    query = {k: v for k, v in args.items() if k != "_cursor"}
    self_url = f"{_base()}/BiologicallyDerivedProduct?{urlencode(args)}"
    next_url = f"{_base()}/BiologicallyDerivedProduct?{urlencode(query | {'_cursor': after})}" if after else None
    total = len(found) if after is None and cursor is None else None
    return _fhir(resources.searchset(_base(), self_url, found, total, next_url))


@blp.get("/BiologicallyDerivedProductDispense/<string:dispense_id>")
@blp.doc(parameters=[FORMAT_PARAMETER])
@blp.response(
    200, ResourceSchema, content_type=resources.FHIR_JSON, description="The BiologicallyDerivedProductDispense"
)
@outcomes(401, 404, 422)
def read_dispense(dispense_id: str):
    """One dispatch of a product to its clinic (`{DIN}-{seq}`), with its receipt and administration."""
    _args(())
    return _fhir(fhir.read_dispense(read_session(), actor(), dispense_id, _facility()))


@blp.get("/BiologicallyDerivedProductDispense")
@blp.doc(
    parameters=[
        _query_parameter(name, words)
        for name, _kind, words in resources.SEARCH_PARAMETERS["BiologicallyDerivedProductDispense"]
    ]
    + [FORMAT_PARAMETER]
)
@blp.response(200, ResourceSchema, content_type=resources.FHIR_JSON, description="A searchset Bundle")
@outcomes(401, 403, 422)
def search_dispenses():
    """The dispatches of one product (`product=BiologicallyDerivedProduct/{DIN}`), as a searchset Bundle."""
    args = _args(("product",))
    if not args.get("product", "").strip():
        raise ValidationFailed({"product": ["name the product: BiologicallyDerivedProduct/{DIN}"]})
    found = fhir.search_dispenses(read_session(), actor(), args["product"], _facility())
    self_url = f"{_base()}/BiologicallyDerivedProductDispense?{urlencode(args)}"
    return _fhir(resources.searchset(_base(), self_url, found, len(found), None))
