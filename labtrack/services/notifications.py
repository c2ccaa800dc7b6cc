"""Who hears about what, and the three ways they hear it: in-app, clinic webhook, e-mail (requirements §6).

Routing, per topic (``ROUTES``):

=====================  ==============================  =====================
topic                  in-app (and e-mail) to          clinic webhook
=====================  ==============================  =====================
batch.released         the batch's clinic users        yes
batch.rejected         the batch's clinic users        yes
batch.dispatched       the batch's clinic users        yes
batch.expiring         the batch's clinic users        yes
batch.expired          the batch's clinic users, QA    yes
deviation.opened       QA, the batch's clinic users    yes (the batch is held)
sterility.positive     QA, the batch's clinic users    yes (urgent, R-QC-5)
identity.mismatch      QA                              no (lab near-miss review)
batch.handed_to_you    the user it was handed to       no (their work list)
follow_up.due          the batch's clinic users        yes (R-OUT-4)
follow_up.missed       the batch's clinic users, QA    yes (R-OUT-4)
trend.flag             QA                              no (R-SPC-2 trend alert)
lookback.opened        the clinic's users (its DINs)   yes (R-LBK-2)
lookback.reminder      the clinic's users (its DINs)   yes (R-LBK-3, after 24 h)
any other topic        QA                              no
=====================  ==============================  =====================

A clinic only ever hears about its own batches: clinic recipients are the active
users of the batch's clinic, and the only webhook called is that clinic's. A
custody-overdue hand-off (R-CUS-5) reaches QA as ``deviation.opened`` with kind
``custody_overdue``. E-mail goes to the same users as the in-app notification,
those with an ``email``, when ``SMTP_URL`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import smtplib
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain.actors import Actor, Role
from labtrack.domain.din import Din
from labtrack.domain.errors import NotFound
from labtrack.domain.hashing import iso_utc
from labtrack.glossary import visit_words, words
from labtrack.models import Clinic, Notification, OutboxMessage, User
from labtrack.services import paging

WEBHOOK_TIMEOUT_S = 10
SMTP_TIMEOUT_S = 10


@dataclass(frozen=True)
class Route:
    clinic: bool  # the batch's clinic users, and the clinic's webhook
    qa: bool
    urgent: bool = False
    addressee: bool = False  # the user the payload names (``to_user_id``)


ROUTES: dict[str, Route] = {
    "batch.released": Route(clinic=True, qa=False),
    "batch.rejected": Route(clinic=True, qa=False),
    "batch.dispatched": Route(clinic=True, qa=False),
    "batch.expiring": Route(clinic=True, qa=False),
    "batch.expired": Route(clinic=True, qa=True),
    "deviation.opened": Route(clinic=True, qa=True),
    "sterility.positive": Route(clinic=True, qa=True, urgent=True),
    "identity.mismatch": Route(clinic=False, qa=True),
    "batch.handed_to_you": Route(clinic=False, qa=False, addressee=True),
    "follow_up.due": Route(clinic=True, qa=False),
    "follow_up.missed": Route(clinic=True, qa=True),
    "trend.flag": Route(clinic=False, qa=True),
    "lookback.opened": Route(clinic=True, qa=False),
    "lookback.reminder": Route(clinic=True, qa=False),
}
LAB_ONLY = Route(clinic=False, qa=True)


def route_of(topic: str) -> Route:
    """Who a topic's notifications go to; a topic with no route goes to the lab only."""
    return ROUTES.get(topic, LAB_ONLY)


def _display(din: object) -> str:
    return Din(din).display if isinstance(din, str) and len(din) == 13 else str(din)


def describe(topic: str, payload: dict) -> str:
    """The one-line text of a notification, for people."""
    din = _display(payload.get("din"))
    match topic:
        case "batch.released":
            conditional = " (conditional release: sterility pending)" if payload.get("conditional_release") else ""
            return f"Batch {din} was released{conditional}."
        case "batch.rejected":
            return f"Batch {din} was rejected: {payload.get('reason') or 'see the batch record'}."
        case "batch.dispatched":
            return f"Batch {din} was dispatched to {payload.get('to')}."
        case "batch.expiring":
            return f"Batch {din} expires at {payload.get('expires_at')} and has not been administered."
        case "batch.expired":
            return f"Batch {din} expired at {payload.get('expires_at')}; it can no longer be used."
        case "deviation.opened":
            return f"Deviation {payload.get('deviation_id')} ({payload.get('kind')}) opened on batch {din}: " + str(
                payload.get("description", "")
            )
        case "sterility.positive":
            return f"URGENT: sterility culture positive for batch {din} (status {payload.get('status')})."
        case "batch.handed_to_you":
            return f"Batch {din} was handed to you by {payload.get('from')}. Receive it when it reaches you."
        case "follow_up.due":
            visit = visit_words(str(payload.get("visit")))
            return f"The {visit.lower()} for batch {din} is due on {payload.get('due_on')} " + (
                f"(window {payload.get('window_from')} to {payload.get('window_to')})."
            )
        case "follow_up.missed":
            visit = visit_words(str(payload.get("visit")))
            return f"The {visit.lower()} for batch {din} was missed: its window closed unrecorded."
        case "trend.flag":
            measured = f"{words(payload.get('metric'))} {payload.get('value'):g} {payload.get('unit')}"
            rules = "; ".join(words(rule) for rule in payload.get("rules") or [])
            return f"Trend alert on batch {din}: {measured} trips {rules} (a trend alert, not a deviation)."
        case "identity.mismatch":
            return f"Identity mismatch refused on batch {din} ({payload.get('action')}, by {payload.get('actor')})."
        case _ if topic.startswith(("adverse_reaction.", "lookback.")):
            return investigation_words(topic, payload)
    return f"{topic} on batch {din}."


def investigation_words(topic: str, payload: dict) -> str:
    """Adverse reactions and lookbacks (R-ADV-2, R-LBK-2..3), in words."""
    din = _display(payload.get("din"))
    dins = ", ".join(_display(d) for d in payload.get("dins", []))
    lookback = f"Lookback {payload.get('lookback_id')}"
    reaction = f"adverse reaction {payload.get('reaction_id')} on batch {din}"
    match topic:
        case "adverse_reaction.reported":
            kind = "reportable" if payload.get("reportable") else "serious" if payload.get("serious") else "non-serious"
            due = f"; report due {payload['report_due_on']}" if payload.get("report_due_on") else ""
            return f"Adverse reaction {payload.get('reaction_id')} ({kind}) reported on batch {din}{due}."
        case "adverse_reaction.due_soon":
            return f"Report {reaction} to the FDA by {payload.get('report_due_on')}."
        case "adverse_reaction.overdue":
            return f"OVERDUE: {reaction} was due to be reported on {payload.get('report_due_on')}."
        case "lookback.opened":
            return f"{lookback} names your batches {dins}: {payload.get('reason')}. Please acknowledge."
        case "lookback.reminder":
            return f"Reminder: {lookback} names your batches {dins} and awaits your acknowledgement."
        case "lookback.unanswered":
            clinics = ", ".join(payload.get("clinics", []))
            return f"{lookback}: no acknowledgement after 72 hours from {clinics}."
        case "lookback.auto_opened":
            named = payload.get("affected")
            return f"{lookback} opened automatically ({payload.get('trigger')}): {named} batch(es) named."
    return f"{topic} ({lookback})."


class Recipients:
    """Active users per route and clinic, looked up once per claimed chunk of outbox rows."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._cache: dict[tuple[Route, int | None], list[User]] = {}

    def of(self, message: OutboxMessage) -> list[User]:
        route = route_of(message.topic)
        if route.addressee:
            user = self.session.get(User, message.payload.get("to_user_id", 0))
            return [user] if user is not None and user.active else []
        key = (route, message.clinic_id if route.clinic else None)
        if key not in self._cache:
            wanted = []
            if route.qa:
                wanted.append(User.role == Role.QA.value)
            if route.clinic and message.clinic_id is not None:
                wanted.append((User.role == Role.CLINIC.value) & (User.clinic_id == message.clinic_id))
            users = (
                self.session.execute(select(User).where(User.active.is_(True), or_(*wanted)).order_by(User.id))
                .unique()
                .scalars()
                .all()
                if wanted
                else []
            )
            self._cache[key] = list(users)
        return self._cache[key]


def fan_out(session: Session, messages: Iterable[OutboxMessage], recipients: Recipients) -> None:
    """Write the in-app notifications of messages not yet notified, in the claiming transaction.

    Unique per (outbox row, user): a second dispatch of the same row cannot add a second copy.
    """
    now = utcnow()
    rows = []
    for message in messages:
        if message.notified_at is not None:
            continue
        text = describe(message.topic, message.payload)
        rows.extend(
            {
                "user_id": user.id,
                "outbox_id": message.id,
                "topic": message.topic,
                "batch_id": message.batch_id,
                "din": message.payload.get("din"),
                "message": text,
                "payload": message.payload,
                "created_at": now,
            }
            for user in recipients.of(message)
        )
        message.notified_at = now
    if rows:
        session.execute(insert(Notification), rows)


# --- in-app list ----------------------------------------------------------------------------


def for_user(
    session: Session,
    actor: Actor,
    *,
    unread_only: bool = False,
    limit: int = paging.LIMIT_DEFAULT,
    after: str | None = None,
) -> paging.Page[Notification]:
    """The actor's own notifications, newest first, a keyset page at a time (R-SCL-4)."""
    query = select(Notification).where(Notification.user_id == actor.id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return paging.page(session, query, Notification.id, limit=limit, after=after)


def mark_read(session: Session, actor: Actor, notification_id: int) -> Notification:
    """Mark one of the actor's own notifications read (another user's answers 404)."""
    notification = session.get(Notification, notification_id, with_for_update=True)
    if notification is None or notification.user_id != actor.id:
        raise NotFound("No such notification.")
    if notification.read_at is None:
        notification.read_at = utcnow()
    return notification


# --- webhooks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    url: str
    body: bytes
    headers: dict[str, str]


def webhook_for(message: OutboxMessage, clinic: Clinic) -> Webhook:
    """The request for one outbox row; the same bytes on every retry, so the signature is stable."""
    body = json.dumps(
        {
            "id": message.id,
            "topic": message.topic,
            "created_at": iso_utc(message.created_at),
            "clinic": clinic.code,
            "din": message.payload.get("din"),
            "urgent": route_of(message.topic).urgent,
            "message": describe(message.topic, message.payload),
            "data": message.payload,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "LabTrack-Webhook/1",
        "X-LabTrack-Delivery": str(message.id),
        "X-LabTrack-Topic": message.topic,
    }
    if clinic.webhook_secret:
        headers["X-LabTrack-Signature"] = signature(clinic.webhook_secret, body)
    return Webhook(clinic.webhook_url or "", body, headers)


def signature(secret: str, body: bytes) -> str:
    """The ``X-LabTrack-Signature`` of a webhook body: HMAC-SHA256 with the clinic's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


_connections = threading.local()


def _connection(scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
    """A kept-alive connection per delivering thread and host; True when it is reused."""
    pool = _connections.__dict__.setdefault("pool", {})
    key = (scheme, netloc)
    if key in pool:
        return pool[key], True
    cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    pool[key] = cls(netloc, timeout=WEBHOOK_TIMEOUT_S)
    return pool[key], False


def _drop(scheme: str, netloc: str) -> None:
    connection = _connections.__dict__.get("pool", {}).pop((scheme, netloc), None)
    if connection is not None:
        connection.close()


def post(webhook: Webhook) -> int:
    """POST the webhook and return the HTTP status; OSError/HTTPException when it cannot be reached."""
    parts = urlsplit(webhook.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {webhook.url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    while True:
        connection, reused = _connection(parts.scheme, parts.netloc)
        try:
            connection.request("POST", target, body=webhook.body, headers=webhook.headers)
            response = connection.getresponse()
            response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            _drop(parts.scheme, parts.netloc)
            if reused:  # the server closed an idle kept-alive connection: one fresh try
                continue
            raise
        except BaseException:
            _drop(parts.scheme, parts.netloc)
            raise
        if response.will_close:
            _drop(parts.scheme, parts.netloc)
        return response.status


# --- e-mail ---------------------------------------------------------------------------------


def send_email(smtp_url: str, recipients: list[str], subject: str, text: str) -> None:
    """One message per outbox row, recipients in Bcc.

    ``SMTP_URL``: ``smtp://[user:password@]host[:port][?from=addr&starttls=true]``, or
    ``smtps://`` for TLS from the start.
    """
    parts = urlsplit(smtp_url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    sender = query.get("from", "labtrack@localhost")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "undisclosed-recipients:;"
    message["Subject"] = subject
    message.set_content(text)
    host = parts.hostname or "localhost"
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=SMTP_TIMEOUT_S)
    else:
        client = smtplib.SMTP(host, parts.port or 25, timeout=SMTP_TIMEOUT_S)
    with client:
        if parts.scheme == "smtp" and query.get("starttls", "").lower() in ("1", "true", "yes"):
            client.starttls(context=ssl.create_default_context())
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message, from_addr=sender, to_addrs=recipients)
