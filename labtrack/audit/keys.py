"""The lab's Ed25519 signing key for checkpoints (R-AUD-4).

Created on first start as ``<instance>/checkpoint-ed25519.pem`` (PKCS#8, readable
by its owner only) and never stored in the database: someone who can rewrite the
database still cannot sign a checkpoint. Every process that signs or serves the
public key (web, worker) must see the same file; on several machines, copy it or
mount it, like ``SECRET_KEY``.

``key_id`` is the hex SHA-256 of the raw 32-byte public key, so an auditor can
tell which key signed a checkpoint.

Which key verification trusts: someone who can replace the key file can sign a
checkpoint over a rewritten history with their own key, so the file alone is no
proof. Pin the published public key where the attacker of the instance folder
cannot reach it: ``LABTRACK_CHECKPOINT_PUBLIC_KEY`` (a PEM file) for the API and
the CLI, ``flask labtrack audit verify --public-key FILE`` for an auditor, and the
offline verifier's ``--public-key``. Without a pin, a replaced key still shows:
the checkpoints signed before the swap carry the old ``key_id``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = "checkpoint-ed25519.pem"
ALGORITHM = "Ed25519"


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key's id: the SHA-256, in hex, of its raw 32 public bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), as the lab publishes it for offline verification."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(
        "ascii"
    )


def load_public_pem(pem: bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; ValueError when it is not an Ed25519 key."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def signature_valid(public_key: Ed25519PublicKey, signature_hex: str, message: bytes) -> bool:
    """Whether ``signature_hex`` is the key's Ed25519 signature of ``message``; a malformed one is not."""
    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class LabKey:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    @property
    def public_pem(self) -> str:
        return public_pem(self.public_key)

    def sign(self, message: bytes) -> str:
        return self.private_key.sign(message).hex()


def _create(path: Path) -> None:
    """Write a new key atomically: web and worker starting together must end up with one key."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, path)  # fails if another process won the race; its key stands
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


@cache
def load_or_create(instance_path: str) -> LabKey:
    """The lab's checkpoint signing key from the instance folder, made there on first use (mode 0600)."""
    path = Path(instance_path) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _create(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeError(f"{path} does not hold an Ed25519 private key")
    return LabKey(key)


def lab_key(config: Mapping[str, Any]) -> LabKey:
    """The key of the instance folder that ``config`` (the app's configuration) names."""
    return load_or_create(str(config["INSTANCE_PATH"]))


@cache
def load_pinned(path: str) -> Ed25519PublicKey:
    """The published key named by ``LABTRACK_CHECKPOINT_PUBLIC_KEY``, read once; checked at start-up."""
    try:
        return load_public_pem(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        raise RuntimeError(
            f"LABTRACK_CHECKPOINT_PUBLIC_KEY={path}: not a readable Ed25519 public key ({error})"
        ) from error


def trusted_public_key(config: Mapping[str, Any]) -> Ed25519PublicKey:
    """The key checkpoints must be signed with: the pinned one when ``config`` names one, else the lab's own."""
    pinned = config.get("LABTRACK_CHECKPOINT_PUBLIC_KEY")
    if pinned:
        return load_pinned(pinned)
    return lab_key(config).public_key
