#!/usr/bin/env python3
"""Set up, run and test LabTrack with nothing installed but Python (standard library only).

Both commands (see USAGE) create ``.venv`` when it is missing and install
``requirements-dev.txt`` into it; the install is skipped while a stamp in the venv
matches the sha256 of the requirements files and the Python version.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import venv
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

USAGE = """usage:
  python3 dev.py run            demo server on http://127.0.0.1:$PORT/ (default 8000) and a Celery worker with beat
  python3 dev.py test [ARGS]    ruff, then pytest [ARGS] on SQLite, then again on $DATABASE_URL when it is set"""
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".labtrack-requirements.sha256"
SERVER_ENV = ("DATABASE_URL", "CELERY_BROKER_URL")
STOP_GRACE_S = 30
# Asked of labtrack.demo itself (in the venv), so the banner never disagrees with the data.
DEMO_LOGINS = """
from labtrack.demo import DEMO_PASSWORD, USERS
print(f"  demo logins, password {DEMO_PASSWORD}:")
for username, full_name, role, clinic in USERS:
    print(f"    {username:<8}{role:<12}{full_name}" + (f" (clinic {clinic})" if clinic else ""))
"""


def say(message: str) -> None:
    print(f"dev.py: {message}", flush=True)


def header(title: str) -> None:
    print(f"\n{'=' * 20} {title} {'=' * 20}", flush=True)


def requirements_digest() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(ROOT.glob("requirements*.txt")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure_venv() -> None:
    """Create ``.venv`` and install the pinned requirements unless the stamp says they are there."""
    # This file is read by whatever python3 a fresh machine has, older than the project's floor too.
    if sys.version_info < (3, 11):  # noqa: UP036
        sys.exit(f"dev.py: LabTrack needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not (BIN / "python").exists():
        say(f"creating {VENV}")
        try:
            venv.create(VENV, with_pip=True, clear=VENV.exists())
        except subprocess.CalledProcessError:
            sys.exit("dev.py: could not create the venv (on Debian/Ubuntu: apt-get install python3-venv).")
    digest = requirements_digest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    say("installing requirements-dev.txt into .venv (new venv or changed requirements; a few minutes)")
    install = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    if subprocess.call([*install, "-r", str(ROOT / "requirements-dev.txt")], cwd=ROOT) != 0:
        sys.exit("dev.py: installing the requirements failed (see pip's output above).")
    STAMP.write_text(digest + "\n")


def venv_env(without: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment with the venv first on PATH, less the variables named."""
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("PYTHONHOME", *without):
        env.pop(name, None)
    return env


def shown_url(url: str) -> str:
    """A URL for the console, without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# ---------------------------------------------------------------- run


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class Children:
    """The web server and the worker, each in a process group of its own.

    Their own groups keep a terminal's Ctrl-C away from them, so each gets exactly
    one SIGTERM from us (a second signal would turn Celery's warm shutdown cold).
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str]) -> None:
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, process_group=0)

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                return name, code
        return None

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within {STOP_GRACE_S} s; killing it")
            # Whatever is left of the group (a stuck pool process, say) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run(_args: list[str]) -> int:
    ensure_venv()
    env = venv_env()
    port = env.setdefault("PORT", "8000")
    for step in ("init-db", "demo-data"):
        if subprocess.call([str(BIN / "flask"), "--app", "wsgi", "labtrack", step], cwd=ROOT, env=env) != 0:
            say(f"`flask --app wsgi labtrack {step}` failed")
            return 1
    logins = subprocess.run(
        [str(BIN / "python"), "-c", DEMO_LOGINS], cwd=ROOT, env=env, capture_output=True, text=True
    ).stdout

    stop_signal: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_signal.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Metrics of the web workers and the Celery worker, added up by any scrape (docs/operations.md).
    metrics_dir = tempfile.mkdtemp(prefix="labtrack-metrics-")
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    children = Children(env)
    children.start("web", [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"])
    children.start(
        "worker",
        [str(BIN / "celery"), "-A", "workers", "worker", "--beat", "--loglevel", "INFO", "--concurrency", "1"],
    )
    embedded = "SQLite under the instance folder (embedded default)"
    base = f"http://127.0.0.1:{port}"
    banner = (
        f"\nLabTrack is running at {base}/  (API docs: {base}/api/docs)\n"
        f"  database: {shown_url(env.get('DATABASE_URL') or embedded)}\n"
        f"  broker:   {shown_url(env.get('CELERY_BROKER_URL') or embedded)}\n"
        f"{logins}Press Ctrl-C to stop.\n"
    )
    exited = None
    while not stop_signal and exited is None:
        time.sleep(0.3)
        exited = children.first_exited()
        # Announced once the server answers, so the address is not lost among the start-up logs.
        if banner and listening(int(port)):
            print(banner, flush=True)
            banner = ""
    if exited is not None:
        name, code = exited
        say(f"{name} exited with status {code}; stopping the rest")
    else:
        say(f"{signal.Signals(stop_signal[0]).name}: stopping the web server and the worker")
    children.stop()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    say("stopped")
    return 1 if exited is not None else 0


# ---------------------------------------------------------------- test


def junit_counts(path: Path) -> dict[str, int] | None:
    """Passed/failed/skipped from pytest's JUnit XML report, or None when it wrote none."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = {name: sum(int(s.get(name, 0)) for s in suites) for name in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return {"passed": total["tests"] - failed - total["skipped"], "failed": failed, "skipped": total["skipped"]}


class Pass:
    """One pass of the test command, its output kept in a log file until it ends."""

    def __init__(self, title: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.title = title
        self.log = log
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        self.seconds: float | None = None

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self.seconds is None:
            self.seconds = time.monotonic() - self.started
        return code

    def show(self, number: int, of: int) -> int:
        """Print the pass's whole output; its exit status."""
        code = self.process.wait()
        self.poll()
        header(f"[{number}/{of}] {self.title}")
        sys.stdout.write(self.log.read_text(errors="replace"))
        say(f"{self.title}: exit status {code} after {self.seconds:.0f} s")
        return code


def test(args: list[str]) -> int:
    """Ruff, then pytest on SQLite and, when DATABASE_URL is set, on that server as well, at once.

    The two pytest passes share nothing (each has its own database, broker and browser),
    so they run side by side, one per core; each one's output is shown whole when it ends.
    """
    ensure_venv()
    pytest = [str(BIN / "python"), "-m", "pytest"]
    suites = [("pytest on SQLite, embedded broker", venv_env(without=SERVER_ENV), "sqlite")]
    server = os.environ.get("DATABASE_URL")
    if server:
        broker = shown_url(os.environ.get("CELERY_BROKER_URL", "the embedded broker"))
        suites.append((f"pytest on {shown_url(server)}, broker {broker}", venv_env(), "server"))
    of = 1 + len(suites)
    with tempfile.TemporaryDirectory(prefix="labtrack-test-") as directory:
        scratch = Path(directory)
        ruff = Pass("ruff check .", [str(BIN / "ruff"), "check", "."], venv_env(), scratch / "ruff.log")
        results = [(1, ruff.title, ruff.show(1, of), None)]
        running = [
            (Pass(title, [*pytest, f"--junitxml={scratch / name}.xml", *args], env, scratch / f"{name}.log"), name)
            for title, env, name in suites
        ]
        say("started at once: " + "; ".join(each.title for each, _ in running))
        waiting = dict(enumerate(running, start=2))
        last_word = time.monotonic()
        while waiting:
            time.sleep(1)
            for number, (each, name) in list(waiting.items()):
                if each.poll() is not None:
                    results.append((number, each.title, each.show(number, of), junit_counts(scratch / f"{name}.xml")))
                    del waiting[number]
                    last_word = time.monotonic()
            if waiting and time.monotonic() - last_word >= 60:
                say("still running: " + "; ".join(each.title for each, _ in waiting.values()))
                last_word = time.monotonic()

    header("summary")
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for _, title, code, counts in sorted(results):
        # pytest's 5 means it collected no test: a pass that proves nothing is a failure.
        verdict = "ok" if code == 0 else ("FAILED (no tests ran)" if code == 5 else f"FAILED (exit {code})")
        detail = ""
        if counts is not None:
            detail = f"  [{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped]"
            totals = {name: totals[name] + counts[name] for name in totals}
        print(f"  {verdict:<24} {title}{detail}")
    failed = any(code != 0 for _, _, code, _ in results)
    print(f"result: {'FAILED' if failed else 'all passes green'}")
    # Last, so it is the run's closing line: the totals over every pytest pass.
    print(f"tests: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped", flush=True)
    return 1 if failed else 0


COMMANDS = {"run": run, "test": test}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    try:
        return COMMANDS[argv[0]](argv[1:])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
