"""The states of the work LabTrack does after a request: outbox deliveries, audit verification runs and
label print jobs.

Each enum is the one list of a column's allowed values: the models' CHECK constraints, the services
that move a row from one state to the next and the pages that report it all read it from here.
"""

from __future__ import annotations

from enum import StrEnum


class OutboxStatus(StrEnum):
    """An outbox row (``labtrack.services.outbox``): waiting, delivered on every channel, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # still undelivered when the retry window closed


class VerificationKind(StrEnum):
    """A verification run (R-SCL-2): every chain from the start, or what is newer than a verified checkpoint."""

    FULL = "full"
    INCREMENTAL = "incremental"


class VerificationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # its report says whether the chains verified
    FAILED = "failed"  # stopped by an error before the end


class LabelPrintStatus(StrEnum):
    """A label print job: waiting for a worker, being sent to the printer, printed (recorded), or not."""

    QUEUED = "queued"
    SENDING = "sending"
    PRINTED = "printed"  # the job names its ``label_printed`` event
    FAILED = "failed"


# A job whose outcome is still to come.
UNFINISHED_PRINT = (LabelPrintStatus.QUEUED, LabelPrintStatus.SENDING)
