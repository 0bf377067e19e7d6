"""Per-user data keys and the encryption of what users write (crypto-shredding).

Each (tenant, user) has a random 256-bit data key in Redis (``events.keys.Keys.data_key``), created on first
use (``SET NX``: two processes racing agree on one key). Message contents, tool call arguments and memory
values are encrypted with it (AES-256-GCM, a random 96-bit nonce, associated data binding tenant, user and
aggregate) before they reach the log; destroying the key (``DataKeys.destroy``) makes every copy unreadable:
the log, the archive, backups. The format of a sealed value::

    enc:v1:<key id>:<base64(nonce || ciphertext || tag)>

The key id names the key that sealed it: after an erasure the user id may come back with a new key, and the
old values still read as erased, not as garbage. ``DataKeys`` caches keys in process for ``ttl_s`` seconds
(a read per write would double the round trips); an erasure in another process takes effect here within
that time, and at once in the process that erased."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.errors import InvalidEvent
from events.schema import has_nul

__all__ = [
    "NONCE_BYTES",
    "PREFIX",
    "DataKey",
    "Erased",
    "aad",
    "is_sealed",
    "key_id_of",
    "open_text",
    "open_value",
    "seal_text",
    "seal_value",
]

PREFIX = "enc:v1:"


NONCE_BYTES = 12


class Erased(Exception):
    """A sealed value that cannot be opened: its key is gone (forgotten) or it does not match its place."""


@dataclass(frozen=True, slots=True)
class DataKey:
    tenant: str
    user_id: str
    id: str  # random, 16 hex digits; a new one every time the user's key is created
    secret: bytes

    @property
    def name(self) -> str:
        """What the envelope's ``encryption_key_id`` says."""
        return f"dek:{self.tenant}:{self.user_id}:{self.id}"


def aad(tenant: str, user_id: str, kind: str, aggregate_id: str) -> bytes:
    # Ids cannot hold control characters (the log refuses them), so \x1f separates them unambiguously.
    return f"{tenant}\x1f{user_id}\x1f{kind}\x1f{aggregate_id}".encode()


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def key_id_of(sealed: str) -> str:
    return sealed[len(PREFIX) :].split(":", 1)[0]


def _refuse_nul(text: str) -> None:
    # The log refuses NUL (append.lua: PostgreSQL text cannot hold it) but sees only the ciphertext: the
    # same refusal here, before sealing, or the projector would dead-letter the plain text.
    if "\x00" in text:
        raise InvalidEvent(
            "a string holds the NUL character (\\u0000), which the read models cannot store",
            code="nul_character",
        )


def seal_text(key: DataKey, associated: bytes, text: str) -> str:
    _refuse_nul(text)
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + AESGCM(key.secret).encrypt(nonce, text.encode(), associated)
    return f"{PREFIX}{key.id}:{base64.b64encode(blob).decode()}"


def open_text(key: DataKey | None, associated: bytes, sealed: str) -> str:
    """The plain text, or ``Erased`` (no key, another key, tampered or misplaced)."""
    key_id, _, body = sealed[len(PREFIX) :].partition(":")
    if key is None or key_id != key.id:
        raise Erased("the key that sealed this value is gone")
    try:
        blob = base64.b64decode(body, validate=True)
        return AESGCM(key.secret).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated).decode()
    except (binascii.Error, InvalidTag, ValueError) as e:
        raise Erased("the value does not open with its key") from e


def seal_value(key: DataKey, associated: bytes, value: Any) -> str:
    """Any JSON value, sealed as its JSON text."""
    if has_nul(value):
        _refuse_nul("\x00")
    return seal_text(key, associated, msgspec.json.encode(value).decode())


def open_value(key: DataKey | None, associated: bytes, sealed: str) -> Any:
    try:
        return msgspec.json.decode(open_text(key, associated, sealed))
    except msgspec.DecodeError as e:
        raise Erased("the value does not open with its key") from e
