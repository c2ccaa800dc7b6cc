"""R-FHIR-1: the FHIR R5 read API, each answer validated with fhir.resources (R5) and its codes checked here."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.biologicallyderivedproduct import BiologicallyDerivedProduct
from fhir.resources.biologicallyderivedproductdispense import BiologicallyDerivedProductDispense
from fhir.resources.bundle import Bundle
from fhir.resources.capabilitystatement import CapabilityStatement
from fhir.resources.operationoutcome import OperationOutcome

from labtrack.fhir import resources
from tests.helpers import Lab

MODELS = {
    "BiologicallyDerivedProduct": BiologicallyDerivedProduct,
    "BiologicallyDerivedProductDispense": BiologicallyDerivedProductDispense,
    "Bundle": Bundle,
    "CapabilityStatement": CapabilityStatement,
    "OperationOutcome": OperationOutcome,
}


def valid(body: dict[str, Any]) -> dict[str, Any]:
    """Validated as FHIR R5 by fhir.resources, and its coded values by the value sets fhir.resources does not check."""
    MODELS[body["resourceType"]].model_validate(body)
    match body["resourceType"]:
        case "Bundle":
            assert body["type"] == "searchset"
            for entry in body.get("entry", []):
                assert entry["search"]["mode"] == "match"
                assert entry["fullUrl"].endswith(f"/{entry['resource']['resourceType']}/{entry['resource']['id']}")
                valid(entry["resource"])
        case "BiologicallyDerivedProduct":
            assert body["productCategory"] == {"system": resources.CATEGORY_SYSTEM, "code": "cells", "display": "Cells"}
            assert body["productStatus"]["system"] == resources.STATUS_SYSTEM
            assert body["productStatus"]["code"] in resources.STATUSES
            assert "coding" not in body["productCode"]
            assert body["productCode"]["text"]
            for quantity in (body["storageTempRequirements"]["low"], body["storageTempRequirements"]["high"]):
                assert (quantity["system"], quantity["code"]) == (resources.UCUM, "Cel")
        case "BiologicallyDerivedProductDispense":
            assert body["status"] in resources.DISPENSE_STATUSES
            assert body["originRelationshipType"]["coding"][0]["code"] == "autologous"
        case "OperationOutcome":
            for issue in body["issue"]:
                assert issue["severity"] in resources.ISSUE_SEVERITIES
                assert issue["code"] in resources.ISSUE_TYPES
    return body


def fhir(lab: Lab, user: str | None, path: str, **query: str):
    headers = lab.headers(user) if user else {}
    return lab.client.get(f"/fhir{path}", query_string=query, headers=headers | {"Accept": "application/fhir+json"})


def read(lab: Lab, user: str | None, path: str, status: int = 200, **query: str) -> dict[str, Any]:
    response = fhir(lab, user, path, **query)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/fhir+json"
    return valid(response.get_json())


@pytest.fixture(scope="module")
def world(shared_lab: Lab) -> dict[str, str]:
    lab = shared_lab
    administered = lab.delivered("adipose")
    lab.ok(lab.administration(administered))
    patient = lab.ok(lab.get("clinic", f"/batches/{administered}"), 200)["patient"]["id"]
    registered = lab.ok(lab.post("clinic", "/batches", {"patient_id": patient, "tissue_source": "bone_marrow"}))["din"]
    return {"administered": administered, "registered": registered}


def test_r_fhir_1_capability_statement_is_public_and_lists_both_resources(shared_lab):
    statement = read(shared_lab, None, "/metadata")
    assert statement["fhirVersion"] == "5.0.0"
    assert statement["kind"] == "instance"
    assert statement["status"] == "active"
    served = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(served) == {"BiologicallyDerivedProduct", "BiologicallyDerivedProductDispense"}
    assert {p["name"] for p in served["BiologicallyDerivedProduct"]["searchParam"]} >= {
        "patient.identifier",
        "identifier",
    }
    assert [i["code"] for i in served["BiologicallyDerivedProductDispense"]["interaction"]] == ["read", "search-type"]


def test_r_fhir_1_product_by_din_carries_the_batch(shared_lab, world):
    din = world["administered"]
    product = read(shared_lab, "clinic", f"/BiologicallyDerivedProduct/{din}")
    assert product["id"] == din
    assert product["biologicalSourceEvent"] == {"system": resources.DIN_SYSTEM, "value": din}
    assert product["processingFacility"][0]["identifier"] == {"system": resources.FIN_SYSTEM, "value": "A9999"}
    assert "SVF" in product["productCode"]["text"]
    assert product["productStatus"]["code"] == "unavailable"  # administered: used
    collection = product["collection"]
    assert collection["collector"]["identifier"]["value"] == "clinic"
    assert collection["source"]["identifier"] == {"system": resources.mrn_system("A9999", "C1"), "value": "MRN-1"}
    assert collection["collectedPeriod"]["start"] < collection["collectedPeriod"]["end"]
    assert product["storageTempRequirements"]["low"]["value"] == 2
    assert product["storageTempRequirements"]["high"]["value"] == 25
    properties = {p["type"]["coding"][0]["code"]: p for p in product["property"]}
    assert properties["viability"]["valueQuantity"]["value"] == 88
    assert properties["tnc"]["valueQuantity"]["value"] == 4.2e7
    assert properties["conditional-release"]["valueBoolean"] is True  # sterility pending at release
    assert product["expirationDate"]
    assert "Doe" not in str(product)  # the patient by identifier only
    assert read(shared_lab, "clinic", f"/BiologicallyDerivedProduct/{din[:5]} {din[5:7]} {din[7:]}")["id"] == din


def test_r_fhir_1_search_by_patient_identifier_is_a_searchset_of_the_clinics_own(shared_lab, world):
    bundle = read(shared_lab, "clinic", "/BiologicallyDerivedProduct", **{"patient.identifier": "MRN-1"})
    found = {entry["resource"]["id"] for entry in bundle["entry"]}
    assert found >= {world["administered"], world["registered"]}
    assert bundle["total"] == len(bundle["entry"])
    system = resources.mrn_system("A9999", "C1")
    with_system = read(shared_lab, "qa", "/BiologicallyDerivedProduct", **{"patient.identifier": f"{system}|MRN-1"})
    assert {entry["resource"]["id"] for entry in with_system["entry"]} == found
    other_system = read(shared_lab, "qa", "/BiologicallyDerivedProduct", **{"patient.identifier": "urn:x|MRN-1"})
    assert other_system.get("entry", []) == []
    assert (
        read(shared_lab, "other", "/BiologicallyDerivedProduct", **{"patient.identifier": "MRN-1"}).get("entry", [])
        == []
    )


def test_r_fhir_1_search_pages_by_next_link(shared_lab, world):
    first = read(shared_lab, "tech", "/BiologicallyDerivedProduct", **{"patient.identifier": "MRN-1", "_count": "1"})
    assert len(first["entry"]) == 1
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = shared_lab.client.get(following.removeprefix("http://localhost"), headers=shared_lab.headers("tech"))
    assert second.status_code == 200
    assert valid(second.get_json())["entry"][0]["resource"]["id"] != first["entry"][0]["resource"]["id"]


def test_r_fhir_1_dispense_for_dispatch_and_administration(shared_lab, world):
    din = world["administered"]
    bundle = read(
        shared_lab, "clinic", "/BiologicallyDerivedProductDispense", product=f"BiologicallyDerivedProduct/{din}"
    )
    (entry,) = bundle["entry"]
    dispense = entry["resource"]
    assert dispense["status"] == "issued"
    assert dispense["product"]["reference"] == f"BiologicallyDerivedProduct/{din}"
    assert dispense["patient"]["identifier"]["value"] == "MRN-1"
    assert [p["function"]["coding"][0]["code"] for p in dispense["performer"]] == [
        "dispatched",
        "received",
        "administered",
    ]
    assert any("Administered" in note["text"] and "Dr. Ines Marlow" in note["text"] for note in dispense["note"])
    assert read(shared_lab, "qa", f"/BiologicallyDerivedProductDispense/{dispense['id']}") == dispense
    none_yet = read(shared_lab, "clinic", "/BiologicallyDerivedProductDispense", product=world["registered"])
    assert none_yet.get("entry", []) == []
    assert none_yet["total"] == 0


def test_r_fhir_1_another_clinics_product_is_exactly_a_missing_one(shared_lab, world):
    din = world["administered"]
    theirs = fhir(shared_lab, "other", f"/BiologicallyDerivedProduct/{din}")
    missing = fhir(shared_lab, "other", f"/BiologicallyDerivedProduct/{din[:7]}999999")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json() == missing.get_json()
    valid(theirs.get_json())
    bundle = read(shared_lab, "other", "/BiologicallyDerivedProductDispense", product=din)
    assert bundle.get("entry", []) == []
    assert fhir(shared_lab, "other", f"/BiologicallyDerivedProductDispense/{din}-1").status_code == 404


@pytest.mark.parametrize(
    ("user", "path", "query", "status", "issue"),
    [
        (None, "/BiologicallyDerivedProduct/A999926000001", {}, 401, "login"),
        ("admin", "/BiologicallyDerivedProduct/NOT-A-DIN", {}, 404, "not-found"),
        ("tech", "/BiologicallyDerivedProduct", {}, 422, "invalid"),
        ("tech", "/BiologicallyDerivedProduct", {"patient": "MRN-1"}, 422, "invalid"),
        ("tech", "/BiologicallyDerivedProduct", {"patient.identifier": "MRN-1", "_count": "0"}, 422, "invalid"),
        ("tech", "/BiologicallyDerivedProduct", {"patient.identifier": "|"}, 422, "invalid"),
        ("tech", "/BiologicallyDerivedProductDispense", {}, 422, "invalid"),
        ("tech", "/Patient", {}, 404, "not-found"),
        ("tech", "/metadata", {"_format": "xml"}, 406, "not-supported"),
    ],
)
def test_r_fhir_1_every_refusal_is_an_operation_outcome(shared_lab, world, user, path, query, status, issue):
    body = read(shared_lab, user, path, status, **query)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == issue


def test_r_fhir_1_only_fhir_json_is_served(shared_lab):
    response = shared_lab.client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"})
    assert response.status_code == 406
    assert response.mimetype == "application/fhir+json"
    valid(response.get_json())
    posted = shared_lab.client.post("/fhir/BiologicallyDerivedProduct", headers=shared_lab.headers("tech"))
    assert posted.status_code == 405
    assert valid(posted.get_json())["issue"][0]["code"] == "not-supported"
