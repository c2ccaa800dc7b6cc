"""The Celery side of operations: JSON logs and task metrics, from Celery's signals (R-OPS-2, R-OPS-3).

``install`` is called by the worker entry point (``workers/__init__.py``). Connecting
``setup_logging`` tells Celery to leave the root logger to us, so the worker's own
lines ("ready.", "Task ... received") are JSON too. Each task runs with its name and id
in the log context; the outbox adds each row's request id while it logs that row.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

from celery import signals

from labtrack.ops import logs, metrics

_started: dict[str, float] = {}  # task id -> start; one worker process runs its tasks one at a time


def _setup_logging(**_kwargs: Any) -> None:
    logs.configure()


def _prerun(task_id: str | None = None, **_kwargs: Any) -> None:
    if task_id is not None:
        _started[task_id] = perf_counter()


def _postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_kwargs: Any) -> None:
    started = _started.pop(task_id, None) if task_id is not None else None
    if started is not None and task is not None:
        outcome = "failure" if state == "FAILURE" else "success"
        metrics.TASKS.labels(task.name, outcome).observe(perf_counter() - started)


def _failure(sender: Any = None, **_kwargs: Any) -> None:
    metrics.TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()


def install() -> None:
    """Connect the handlers (weakly-referenced receivers would vanish: these are module functions)."""
    signals.setup_logging.connect(_setup_logging, weak=False)
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    signals.task_failure.connect(_failure, weak=False)
    logging.getLogger(__name__).debug("task metrics and JSON logs installed")
