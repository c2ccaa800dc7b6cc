"""Real components for the worker tests: a webhook receiver, Celery worker processes, a private Redis."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parents[2]
SECRET = "clinic-webhook-secret"


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Receiver:
    """A clinic's webhook endpoint: checks the HMAC, de-duplicates on X-LabTrack-Delivery.

    ``fail_first`` answers 500 to the first n attempts of every delivery; ``delay``
    slows each answer; ``serial`` answers one request at a time.
    """

    def __init__(self, secret: str = SECRET, *, fail_first: int = 0, delay: float = 0.0, serial: bool = False):
        self.secret = secret
        self.fail_first = fail_first
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.serial_lock = threading.Lock() if serial else None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint would offer

            def do_POST(self) -> None:
                if receiver.serial_lock is not None:
                    with receiver.serial_lock:
                        self._handle()
                else:
                    self._handle()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                record = {
                    "path": self.path,
                    "delivery": int(self.headers["X-LabTrack-Delivery"]),
                    "signature_ok": hmac.compare_digest(self.headers.get("X-LabTrack-Signature", ""), expected),
                    "topic": self.headers.get("X-LabTrack-Topic"),
                    "body": json.loads(body),
                }
                with receiver.lock:
                    attempt = sum(1 for r in receiver.requests if r["delivery"] == record["delivery"]) + 1
                    record["attempt"] = attempt
                    receiver.requests.append(record)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = 500 if attempt <= receiver.fail_first else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default backlog of 5 resets a burst of new connections

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/labtrack"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> set[int]:
        """Delivery ids answered 200 (a receiver's de-duplicated view)."""
        with self.lock:
            return {r["delivery"] for r in self.requests if r["attempt"] > self.fail_first}

    def wait_for(self, ids: Iterable[int], timeout: float = 30) -> bool:
        wanted = set(ids)
        return bool(wait_until(lambda: wanted <= self.accepted(), timeout))


def worker_env(app: Flask, **extra: str) -> dict[str, str]:
    """The environment that makes ``celery -A workers`` build the same app as the test's."""
    config = app.config
    env = dict(os.environ)
    env.update(
        DATABASE_URL=config["DATABASE_URL"],
        CELERY_BROKER_URL=config["CELERY_BROKER_URL"],
        LABTRACK_INSTANCE_PATH=str(config["INSTANCE_PATH"]),
        LABTRACK_TASK_QUEUE=config["LABTRACK_TASK_QUEUE"],
        LABTRACK_OUTBOX_SWEEP_SECONDS=str(config["LABTRACK_OUTBOX_SWEEP_SECONDS"]),
        LABTRACK_OUTBOX_LEASE_SECONDS=str(config["LABTRACK_OUTBOX_LEASE_SECONDS"]),
        LABTRACK_WEBHOOK_RETRY_SECONDS=str(config["LABTRACK_WEBHOOK_RETRY_SECONDS"]),
        SECRET_KEY=config["SECRET_KEY"],
        ARGON2_TIME_COST=str(config["ARGON2_TIME_COST"]),
        ARGON2_MEMORY_KIB=str(config["ARGON2_MEMORY_KIB"]),
        PYTHONPATH=str(ROOT),
    )
    if config.get("SMTP_URL"):
        env["SMTP_URL"] = config["SMTP_URL"]
    env.update(extra)
    return env


class Worker:
    """``celery -A workers worker --beat`` in its own process group, as on a production machine."""

    def __init__(self, app: Flask, log_path: Path, *, concurrency: int = 2, beat: bool = True) -> None:
        self.log_path = log_path
        # setpriv (util-linux): the worker dies with the test or bench process, even one killed outright
        reaper = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        command = [
            *reaper, sys.executable, "-m", "celery", "-A", "workers", "worker",
            "--loglevel", "INFO", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if beat:
            command += ["--beat", "--schedule", str(Path(app.config["INSTANCE_PATH"]) / f"beat-{time.time_ns()}")]
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=worker_env(app), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        ready = wait_until(lambda: b"ready." in log_path.read_bytes() or self.process.poll() is not None, 60)
        if not ready or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: the machine died mid-task."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """At the end of a test, a kill too: a warm shutdown takes 2-5 s and no test depends on it."""
        self.kill()
        self.log.close()


class PrivateRedis:
    """A redis-server of the test's own, on a free port, without persistence: stopping it loses everything."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def accepting() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        assert wait_until(accepting, 10), "the private redis-server did not start"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class SmtpSink:
    """A minimal SMTP server (RFC 5321 commands smtplib sends) that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(f"{line}\r\n".encode())

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                sender, recipients = None, []
                while line := self.rfile.readline():
                    command = line.decode().rstrip("\r\n")
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 sink")
                    elif verb == "MAIL":
                        sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with .")
                        body = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b""):
                            body.append(data.decode())
                        sink.messages.append({"from": sender, "to": recipients, "data": "".join(body)})
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.server.server_address[1]}?from=labtrack@lab.example"

    def __enter__(self) -> SmtpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
