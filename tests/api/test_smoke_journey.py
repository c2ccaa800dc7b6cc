"""The journey of issue 2 end to end: registration to concentration, then the chain verifies."""


def test_adipose_batch_reaches_processed_and_chain_verifies(lab):
    din = lab.processed("adipose")
    batch = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert batch["status"] == "processed"
    assert batch["steps_done"] == ["harvest", "digestion", "isolation", "concentration"]
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"] is True


def test_bone_marrow_batch_reaches_processed(lab):
    din = lab.processed("bone_marrow")
    assert lab.ok(lab.get("tech", f"/batches/{din}"), 200)["status"] == "processed"
