"""PostgreSQL read-only (as after a failover to a standby) and out of space (a tablespace on a full disk):
writes answer 503 saying which, reads go on, nothing is half-written, and writing resumes once it is over."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.faults.conftest import (
    PrivateCluster,
    TinyDisk,
    assert_nothing_half_written,
    descriptions,
    deviations_until_refused,
    lab_template,
    unavailable,
)

pytestmark = pytest.mark.postgres


def name_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


class TestReadOnly:
    @pytest.fixture
    def database_url(self, private_database: str) -> str:
        return private_database

    def test_writes_answer_503_read_only_while_reads_go_on(self, lab, private_cluster: PrivateCluster, database_url):
        din = lab.at_lab()
        lab.headers("qa")
        name = name_of(database_url)
        # what a failover to a hot standby looks like to the app: its sessions end, new ones are read-only
        private_cluster.admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        private_cluster.disconnect_clients(name)
        step = lab.step(din, "digestion")
        assert unavailable(step, "read_only"), step.get_json()
        assert "read-only" in step.get_json()["detail"]
        deviation = lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": "read-only"})
        assert unavailable(deviation, "read_only")
        batch = lab.ok(lab.get("qa", f"/batches/{din}"), 200)  # reads are served meanwhile
        assert batch["status"] == "received"
        assert lab.ok(lab.get("qa", "/audit/verify"), 200)["ok"]

        private_cluster.admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        private_cluster.disconnect_clients(name)
        lab.ok(lab.step(din, "digestion"))
        events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
        assert [event["type"] for event in events][-2:] == ["receipt", "digestion"]
        assert descriptions(lab, din) == []
        assert_nothing_half_written(lab)


class TestOutOfSpace:
    @pytest.fixture
    def disk(self, private_cluster: PrivateCluster) -> Iterator[TinyDisk]:
        disk = TinyDisk(private_cluster.directory / f"disk-{uuid.uuid4().hex[:8]}", size_mb=32)
        yield disk
        disk.unmount()

    @pytest.fixture
    def database_url(self, request, private_cluster: PrivateCluster, disk: TinyDisk) -> Iterator[str]:
        """The test's database, in a tablespace on the tiny disk (the WAL stays on the cluster's own disk)."""
        tablespace = f"tiny_{uuid.uuid4().hex[:8]}"
        private_cluster.admin(f"CREATE TABLESPACE {tablespace} LOCATION '{disk.mountpoint}'")
        url = private_cluster.new_database(tablespace=tablespace, template=lab_template(request))
        yield url
        private_cluster.admin(f'DROP DATABASE "{name_of(url)}" WITH (FORCE)', f"DROP TABLESPACE {tablespace}")

    def test_writes_answer_503_full_until_space_is_freed_and_the_refused_write_left_nothing(self, lab, disk):
        din = lab.at_lab()
        lab.headers("qa")
        disk.fill()
        accepted, refused, description = deviations_until_refused(lab, din)
        assert unavailable(refused, "full"), refused.get_json()
        assert "out of storage space" in refused.get_json()["detail"]
        assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["held"] is bool(accepted)  # reads are served
        assert descriptions(lab, din) == accepted  # each accepted once, the refused one not at all

        disk.free()
        lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": description}))
        assert descriptions(lab, din) == [*accepted, description]
        assert_nothing_half_written(lab)
        print(f"\nfaults: disk full after {len(accepted)} deviations; the next answered 503 full, wrote nothing")
