"""Configuration from the environment (and `.env` where present). Nothing needs a file to start."""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent


def default_instance_path() -> Path:
    return Path(os.environ.get("LABTRACK_INSTANCE_PATH", ROOT / "instance")).resolve()


def _secret_key(instance: Path) -> str:
    """Generated once into the instance folder, readable by the owner only."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def _ratelimit_storage(broker_url: str) -> str:
    """The Redis broker holds the sign-in counters too; without Redis, each process counts in memory."""
    return broker_url if broker_url.startswith(("redis://", "rediss://")) else "memory://"


@dataclass
class Config:
    INSTANCE_PATH: str
    DATABASE_URL: str
    CELERY_BROKER_URL: str
    SECRET_KEY: str
    LABTRACK_FIN: str = "A9999"
    LABTRACK_TIMEZONE: str = "UTC"
    LABTRACK_CUSTODY_GAP_MINUTES: int = 240
    LABTRACK_EXPIRY_WARNING_MINUTES: int = 120
    LABTRACK_TOKEN_HOURS: float = 12
    SMTP_URL: str | None = None
    # A PEM file with the lab's published checkpoint key, kept out of the instance folder (labtrack/audit/keys.py).
    LABTRACK_CHECKPOINT_PUBLIC_KEY: str | None = None
    # Workers (docs/workers.md): the outbox sweep's period, how long a sweeper's claim on a row
    # lasts, the first retry delay (doubling up to 24 h), and the Celery queue to use.
    LABTRACK_OUTBOX_SWEEP_SECONDS: float = 30
    LABTRACK_CHECKPOINT_SECONDS: float = 600  # beat's checkpoint interval (R-AUD-4); tests shorten it
    LABTRACK_OUTBOX_LEASE_SECONDS: float = 300
    LABTRACK_WEBHOOK_RETRY_SECONDS: float = 10
    LABTRACK_TASK_QUEUE: str = "labtrack"
    # How long the outcomes report waits for a worker to compute statistics it has not stored yet.
    LABTRACK_STATISTICS_WAIT_SECONDS: float = 10
    # Sign-in throttling (labtrack/security.py), Flask-Limiter rate strings. The counters live in
    # LABTRACK_RATELIMIT_STORAGE_URL, shared by every web worker: the Redis broker when there is one.
    LABTRACK_LOGIN_LIMIT_PER_USERNAME: str = "10/minute"
    LABTRACK_LOGIN_LIMIT_PER_ADDRESS: str = "30/minute"
    LABTRACK_RATELIMIT_STORAGE_URL: str = "memory://"
    LABTRACK_RATELIMIT_KEY_PREFIX: str = "labtrack"
    # Reverse proxies in front of gunicorn (e.g. 1 for nginx): their X-Forwarded-For/-Proto are
    # trusted for that many hops, so throttling and the auth record see the client, not the proxy.
    # 0 (the default) trusts none: a client cannot choose the address it is counted under.
    LABTRACK_PROXY_HOPS: int = 0
    # Operations (docs/operations.md): who may scrape /metrics (addresses or networks, comma-separated),
    # and single sign-on with OpenID Connect, on when the issuer is set. LABTRACK_OIDC_CLAIM names the
    # ID token claim matched to a LabTrack user: their username, or their e-mail when the claim is "email".
    LABTRACK_METRICS_ALLOW: str = "127.0.0.0/8,::1/128"
    LABTRACK_OIDC_ISSUER: str | None = None
    LABTRACK_OIDC_CLIENT_ID: str | None = None
    LABTRACK_OIDC_CLIENT_SECRET: str | None = None
    LABTRACK_OIDC_CLAIM: str = "preferred_username"
    LABTRACK_OIDC_NAME: str = "your organisation's account"
    # Interoperability (docs/interoperability.md): the thermal label printer as host:port (raw TCP,
    # port 9100 by default), and how long a transport leg may spend outside its range before a
    # temperature_excursion deviation opens (0: any time at all).
    LABTRACK_LABEL_PRINTER: str | None = None
    LABTRACK_EXCURSION_MINUTES: float = 0
    ARGON2_TIME_COST: int = 3
    ARGON2_MEMORY_KIB: int = 65536
    MAX_CONTENT_LENGTH: int = 1024 * 1024
    TESTING: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, instance_path: Path | None = None, **overrides: Any) -> Config:
        load_dotenv(ROOT / ".env")
        instance = (instance_path or default_instance_path()).resolve()
        instance.mkdir(parents=True, exist_ok=True)
        env = os.environ
        values: dict[str, Any] = {
            "INSTANCE_PATH": str(instance),
            "DATABASE_URL": env.get("DATABASE_URL") or f"sqlite:///{instance / 'labtrack.sqlite'}",
            "CELERY_BROKER_URL": env.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{instance / 'celery-broker.sqlite'}",
            "SECRET_KEY": env.get("SECRET_KEY") or _secret_key(instance),
            "LABTRACK_FIN": env.get("LABTRACK_FIN", "A9999"),
            "LABTRACK_TIMEZONE": env.get("LABTRACK_TIMEZONE", "UTC"),
            "LABTRACK_CUSTODY_GAP_MINUTES": int(env.get("LABTRACK_CUSTODY_GAP_MINUTES", 240)),
            "LABTRACK_EXPIRY_WARNING_MINUTES": int(env.get("LABTRACK_EXPIRY_WARNING_MINUTES", 120)),
            "LABTRACK_TOKEN_HOURS": float(env.get("LABTRACK_TOKEN_HOURS", 12)),
            "SMTP_URL": env.get("SMTP_URL") or None,
            "LABTRACK_CHECKPOINT_PUBLIC_KEY": env.get("LABTRACK_CHECKPOINT_PUBLIC_KEY") or None,
            "LABTRACK_OUTBOX_SWEEP_SECONDS": float(env.get("LABTRACK_OUTBOX_SWEEP_SECONDS", 30)),
            "LABTRACK_CHECKPOINT_SECONDS": float(env.get("LABTRACK_CHECKPOINT_SECONDS", 600)),
            "LABTRACK_OUTBOX_LEASE_SECONDS": float(env.get("LABTRACK_OUTBOX_LEASE_SECONDS", 300)),
            "LABTRACK_WEBHOOK_RETRY_SECONDS": float(env.get("LABTRACK_WEBHOOK_RETRY_SECONDS", 10)),
            "LABTRACK_TASK_QUEUE": env.get("LABTRACK_TASK_QUEUE") or "labtrack",
            "LABTRACK_STATISTICS_WAIT_SECONDS": float(env.get("LABTRACK_STATISTICS_WAIT_SECONDS", 10)),
            "LABTRACK_LOGIN_LIMIT_PER_USERNAME": env.get("LABTRACK_LOGIN_LIMIT_PER_USERNAME") or "10/minute",
            "LABTRACK_LOGIN_LIMIT_PER_ADDRESS": env.get("LABTRACK_LOGIN_LIMIT_PER_ADDRESS") or "30/minute",
            "LABTRACK_RATELIMIT_KEY_PREFIX": env.get("LABTRACK_RATELIMIT_KEY_PREFIX") or "labtrack",
            "LABTRACK_PROXY_HOPS": int(env.get("LABTRACK_PROXY_HOPS", 0)),
            "LABTRACK_METRICS_ALLOW": env.get("LABTRACK_METRICS_ALLOW") or "127.0.0.0/8,::1/128",
            "LABTRACK_OIDC_ISSUER": env.get("LABTRACK_OIDC_ISSUER") or None,
            "LABTRACK_OIDC_CLIENT_ID": env.get("LABTRACK_OIDC_CLIENT_ID") or None,
            "LABTRACK_OIDC_CLIENT_SECRET": env.get("LABTRACK_OIDC_CLIENT_SECRET") or None,
            "LABTRACK_OIDC_CLAIM": env.get("LABTRACK_OIDC_CLAIM") or "preferred_username",
            "LABTRACK_OIDC_NAME": env.get("LABTRACK_OIDC_NAME") or "your organisation's account",
            "LABTRACK_LABEL_PRINTER": env.get("LABTRACK_LABEL_PRINTER") or None,
            "LABTRACK_EXCURSION_MINUTES": float(env.get("LABTRACK_EXCURSION_MINUTES", 0)),
            "ARGON2_TIME_COST": int(env.get("ARGON2_TIME_COST", 3)),
            "ARGON2_MEMORY_KIB": int(env.get("ARGON2_MEMORY_KIB", 65536)),
        }
        values.update(overrides)
        values.setdefault(
            "LABTRACK_RATELIMIT_STORAGE_URL",
            env.get("LABTRACK_RATELIMIT_STORAGE_URL") or _ratelimit_storage(values["CELERY_BROKER_URL"]),
        )
        return cls(**values)

    def as_mapping(self) -> dict[str, Any]:
        mapping = asdict(self)
        mapping.update(mapping.pop("extra"))
        return mapping
