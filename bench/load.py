"""A closed-loop load generator: N threads, each with its own keep-alive HTTP connection.

Each client sends its next request as soon as the previous answer is read, for a fixed
time, and records every request's latency and status. Python threads share one core's
worth of interpreter, which is small next to a request's server time here, and the
same client runs against the floor and the app.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Request = tuple[str, str, Any, dict[str, str]]  # method, path, JSON body (or None), headers


@dataclass
class Run:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    exhausted: int = 0  # clients that ran out of prepared work before the time was up

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "rate_per_s": round(self.rate, 1),
            "p50_ms": round(self.percentile(50) * 1000, 2),
            "p99_ms": round(self.percentile(99) * 1000, 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "clients_out_of_work": self.exhausted,
        }


def one(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
    """A single request on a fresh connection: (status, parsed JSON or text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        payload = json.dumps(body) if body is not None else None
        connection.request(method, path, payload, {"Content-Type": "application/json"} | (headers or {}))
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(raw) if "json" in kind else raw.decode()
    finally:
        connection.close()


def run(
    port: int,
    work: list[Iterator[Request]],
    seconds: float,
    warmup: int = 3,
    check: Callable[[int, bytes], None] | None = None,
) -> Run:
    """Drive one iterator of requests per client for ``seconds``; the first ``warmup`` per client are not counted."""
    result = Run(clients=len(work), seconds=seconds)
    lock = threading.Lock()
    start_line = threading.Barrier(len(work) + 1)
    stop_at = [0.0]

    def client(requests: Iterator[Request]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        latencies: list[float] = []
        statuses: Counter = Counter()
        exhausted = False

        def send(request: Request) -> float:
            method, path, body, headers = request
            payload = json.dumps(body).encode() if body is not None else None
            began = time.perf_counter()
            connection.request(method, path, payload, {"Content-Type": "application/json"} | headers)
            response = connection.getresponse()
            raw = response.read()
            took = time.perf_counter() - began
            statuses[response.status] += 1
            if check is not None:
                check(response.status, raw)
            return took

        try:
            for _ in range(warmup):
                request = next(requests, None)
                if request is not None:
                    send(request)
            statuses.clear()
            start_line.wait()
            while time.perf_counter() < stop_at[0]:
                request = next(requests, None)
                if request is None:
                    exhausted = True
                    break
                latencies.append(send(request))
        except BaseException:
            start_line.abort()  # a client that cannot start must not leave the others waiting forever
            raise
        finally:
            connection.close()
            with lock:
                result.latencies.extend(latencies)
                result.statuses.update(statuses)
                result.exhausted += exhausted

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in work]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds + 3600  # set properly once everyone is warm
    start_line.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - began
    return result
