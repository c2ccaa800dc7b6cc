"""JSON log lines and the request id, in-process (R-OPS-3); the deployment test (gunicorn, a worker,
a webhook) is tests/ops/test_metrics_and_logs.py."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest
from pythonjsonlogger.json import JsonFormatter

from labtrack.ops import logs
from tests.helpers import PASSWORD, Lab


@pytest.fixture
def captured() -> io.StringIO:
    """What the JSON handler writes, for the length of a test."""
    stream = io.StringIO()
    handler = logs.handler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123", True), ("proxy:7f3a/2", True), ("x" * 64, True), ("x" * 65, False), ("a b", False),
     ("line\nbreak", False), ("-leading-dash", False), ("", False), (None, False)],
)  # fmt: skip
def test_r_ops_3_a_valid_request_id_is_kept_anything_else_replaced(sent: str | None, kept: bool):
    made = logs.request_id_from(sent)
    assert (made == sent) is kept
    assert logs.VALID_REQUEST_ID.fullmatch(made)


def test_r_ops_3_each_line_is_one_json_object_with_the_context(captured: io.StringIO):
    with logs.context(request_id="req-1", username="tech", din="A999926000001"):
        logging.getLogger("labtrack.test").warning("multi\nline %s", "message")
    logging.getLogger("labtrack.test").warning("outside")
    inside, outside = records(captured)
    assert inside["message"] == "multi\nline message"
    assert inside["level"] == "WARNING"
    assert inside["logger"] == "labtrack.test"
    assert inside["time"].endswith("Z")
    assert (inside["request_id"], inside["username"], inside["din"]) == ("req-1", "tech", "A999926000001")
    assert "request_id" not in outside
    assert len(captured.getvalue().splitlines()) == 2  # a newline in a message stays inside its object


def test_r_ops_3_the_request_id_is_answered_stored_on_outbox_rows_and_logged(lab: Lab, captured: io.StringIO):
    din = lab.at_lab()
    opened = lab.post(
        "tech",
        f"/batches/{din}/deviations",
        {"kind": "manual", "description": "torn label"},
        **{"X-Request-ID": "r-42"},
    )
    assert opened.status_code == 201
    assert opened.headers["X-Request-ID"] == "r-42"
    assert lab.sql("SELECT request_id FROM outbox WHERE topic = 'deviation.opened'")[0][0] == "r-42"
    (line,) = [r for r in records(captured) if r.get("request_id") == "r-42"]
    assert line["logger"] == "labtrack.access"
    assert (line["username"], line["din"], line["status"]) == ("tech", din, 201)
    assert line["path"] == f"/api/v1/batches/{din}/deviations"
    # a sign-in's line names the path only: the body (the password) is never logged
    lab.client.post("/api/v1/auth/token", json={"username": "tech", "password": PASSWORD})
    assert PASSWORD not in captured.getvalue()


def test_r_ops_3_the_access_line_writes_what_the_general_formatter_would(captured: io.StringIO):
    access = logging.getLogger(logs.ACCESS_LOGGER)
    path = '/api/v1/batches/A999926000001/st\u00e9ps"'  # escaped alike by both
    with logs.context(request_id="req-7", username="tech", din="A999926000001"):
        logs.log_access(access, logging.INFO, "POST", path, 201, 0.0042345)
    (line,) = [r for r in records(captured) if r.get("request_id") == "req-7"]
    record = access.makeRecord(
        access.name, logging.INFO, __file__, 0, logs.ACCESS_MESSAGE, ("POST", path, 201, 4.2345), None,
        extra={"method": "POST", "path": path, "status": 201, "duration_ms": 4.23, "request_id": "req-7",
               "username": "tech", "din": "A999926000001"},
    )  # fmt: skip
    record.created = datetime.fromisoformat(line["time"]).timestamp()
    assert line == json.loads(JsonFormatter.format(logs.Formatter(), record))  # the general formatter's own path
    assert line["message"] == f"POST {path} 201 4.2 ms"
    assert line["duration_ms"] == 4.23


def test_r_ops_3_no_access_line_below_the_loggers_level(lab: Lab, captured: io.StringIO):
    access = logging.getLogger(logs.ACCESS_LOGGER)
    level = access.level
    access.setLevel(logging.WARNING)
    try:
        assert lab.get("tech", "/batches").status_code == 200
    finally:
        access.setLevel(level)
    assert not [r for r in records(captured) if r["logger"] == logs.ACCESS_LOGGER]
    assert lab.get("tech", "/batches").status_code == 200
    assert [r["path"] for r in records(captured) if r["logger"] == logs.ACCESS_LOGGER] == ["/api/v1/batches"]
