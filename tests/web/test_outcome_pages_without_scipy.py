"""R-OUT-5, R-SPC-3 and the 150 MB bar: a web process that serves the outcomes and trends pages, their charts and
the outcomes report never imports scipy (it would take a worker past the bar); the statistics it shows were
computed and stored by a worker (here: this test process, which plays the worker)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from labtrack.services import outcomes, reference
from labtrack.services.auth import actor_of
from tests.api.test_follow_up import followed_up
from tests.helpers import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
PAGES = (
    "/qa/trends",
    "/qa/trends/adipose/viability_pct.svg",
    "/qa/trends/adipose/viability_pct.svg?part=mr",
    "/outcomes",
    "/outcomes/change.svg",
    "/outcomes/dose-adipose.svg",
)
WEB_PROCESS = textwrap.dedent(
    """
    import json, re, sys
    from pathlib import Path
    from config import Config
    from labtrack import create_app

    settings, token, pages = json.loads(sys.argv[1])
    password, folder = settings.pop("password"), Path(settings.pop("instance_path"))
    app = create_app(Config.from_env(instance_path=folder, **settings))
    client = app.test_client()
    login = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    client.post("/login", data={"username": "qa", "password": password, "csrf_token": csrf})
    answers = {path: client.get(path) for path in pages}
    api = client.get("/api/v1/reports/outcomes", headers={"Authorization": f"Bearer {token}"})
    print(json.dumps({
        "status": {path: answer.status_code for path, answer in answers.items()} | {"api": api.status_code},
        "outcomes_page": answers["/outcomes"].text,
        "api": api.get_json(),
        "scipy": sorted(name for name in sys.modules if name == "scipy" or name.startswith("scipy.")),
    }))
    """
)


def test_r_out_5_r_spc_3_a_web_process_serving_outcomes_and_trends_never_imports_scipy(lab, app, tmp_path):
    followed_up(lab)
    db = lab.db
    with db.reader() as session:
        qa = actor_of(reference.user_by_username(session, "qa"))
        waiting = outcomes.pending(outcomes.report(session, qa))
    assert waiting, "the report has statistics to compute"
    for cohort in waiting:  # what the worker's task does
        db.write(lambda session, values=cohort["inputs"]: outcomes.store(session, values))
    settings = {
        "instance_path": str(tmp_path / "web"),
        "DATABASE_URL": app.config["DATABASE_URL"],
        "CELERY_BROKER_URL": app.config["CELERY_BROKER_URL"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "LABTRACK_STATISTICS_WAIT_SECONDS": 0.5,
        "password": PASSWORD,
    }
    token = lab.headers("qa")["Authorization"].removeprefix("Bearer ")
    served = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS, json.dumps([settings, token, PAGES])],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    found = json.loads(served.stdout.strip().splitlines()[-1])
    assert set(found["status"].values()) == {200}, found["status"]
    assert found["scipy"] == []
    assert {cohort["statistics"] for cohort in found["api"]["cohorts"]} == {"computed"}
    m6 = next(v for v in found["api"]["cohorts"][0]["visits"] if v["visit"] == "m6")
    assert m6["ci_low"] < m6["mean"] < m6["ci_high"]
    assert "95 % confidence interval of the mean" in found["outcomes_page"]
    assert "being computed" not in found["outcomes_page"]
