"""API keys, tenants and roles: who may call, as which tenant, with which rights.

A key reads ``sk_<id>_<secret>``: ``id`` (12 hex digits) names it in listings and logs, ``secret`` is 256
random bits. Only ``sha256(secret)`` is stored, compared in constant time. Each key maps to one tenant and one
role; roles are ordered ``reader < writer < admin``:

* ``reader``: every read of its tenant;
* ``writer``: and every write (sessions, messages, memory);
* ``admin``: and the audit trail across users (``GET /v1/events`` without ``session_id``/``user_id``),
  publishing raw events (``POST /v1/events``: raw events set their own actor and ids), forgetting a user
  (``POST /v1/users/{id}/forget``), ``/metrics``, and an ``X-Actor`` of kind ``admin``.

Keys come from a JSON file (``SESSIONS_API_KEYS_FILE``, written by ``sessions keys create|list|revoke``,
re-read when it changes, checked at most once a second) and/or ``SESSIONS_API_KEYS`` (a JSON list of
``{"id", "tenant", "role", "hash"}``, or ``id:tenant:role:hash`` entries separated by commas). With neither
set the service is open: every request is an admin of the tenant it names (``X-Tenant-Id``, else the default),
and ``sessions serve`` refuses to bind anything but loopback unless told ``--insecure-bind``.

Refusals: no key 401 ``missing_api_key``; an unknown key or a wrong secret 401 ``invalid_api_key``; a revoked
key 401 ``revoked_api_key``; a role too low 403 ``insufficient_role``; an ``X-Tenant-Id`` naming another
tenant than the key's 403 ``tenant_mismatch``. gRPC: UNAUTHENTICATED / PERMISSION_DENIED, same codes."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from service.errors import BadRequest, ConfigurationError, NotFound, PermissionDenied, Unauthenticated
from service.validation import check_tenant

__all__ = [
    "ROLES",
    "ApiKey",
    "KeyStore",
    "Principal",
    "Role",
    "create_key",
    "hash_secret",
    "load_keys_file",
    "parse_keys_env",
    "revoke_key",
]

log = logging.getLogger("service.security")


Role = Literal["reader", "writer", "admin"]


ROLES: tuple[Role, ...] = ("reader", "writer", "admin")


_RANK = {r: i for i, r in enumerate(ROLES)}


_KEY = re.compile(r"^sk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")


_ID = re.compile(r"^[0-9a-f]{12}$")


_HASH = re.compile(r"^[0-9a-f]{64}$")


# Compared against when the id is unknown, so an unknown id costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def hash_secret(secret: str) -> str:
    """sha256 of the secret: enough for 256 random bits (no dictionary to attack, nothing to salt)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: never its secret, only the secret's hash."""

    id: str
    tenant: str
    role: Role
    hash: str
    name: str | None = None
    created_at: str | None = None
    revoked_at: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> ApiKey:
        def text(field: str, required: bool = True) -> str | None:
            value = raw.get(field)
            if value is None and not required:
                return None
            if not isinstance(value, str):
                raise ConfigurationError(
                    f"an API key entry needs a string {field!r}", code="invalid_api_keys"
                )
            return value

        key_id, tenant, role, digest = text("id"), text("tenant"), text("role"), text("hash")
        assert key_id is not None and tenant is not None and role is not None and digest is not None
        if not _ID.match(key_id) or not _HASH.match(digest) or role not in _RANK:
            raise ConfigurationError(
                f"API key entry {key_id!r}: id is 12 hex digits, hash 64, role one of {', '.join(ROLES)}",
                code="invalid_api_keys",
            )
        try:
            check_tenant(tenant)
        except BadRequest as e:
            raise ConfigurationError(f"API key {key_id}: {e.message}", code="invalid_api_keys") from e
        return cls(
            id=key_id,
            tenant=tenant,
            role=role,
            hash=digest,
            name=text("name", False),
            created_at=text("created_at", False),
            revoked_at=text("revoked_at", False),
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the key (None when the service is open), its tenant and its role."""

    key_id: str | None
    tenant: str
    role: Role

    def require(self, role: Role, what: str) -> None:
        if _RANK[self.role] < _RANK[role]:
            raise PermissionDenied(
                f"{what} needs the {role} role; this key is a {self.role}",
                code="insufficient_role",
                required=role,
            )


def parse_keys_env(text: str | None) -> list[ApiKey]:
    """``SESSIONS_API_KEYS``: a JSON list of entries, or ``id:tenant:role:hash`` entries, comma-separated."""
    if text is None or not text.strip():
        return []
    text = text.strip()
    if text.startswith("["):
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ConfigurationError(
                f"SESSIONS_API_KEYS is not valid JSON: {e}", code="invalid_api_keys"
            ) from e
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise ConfigurationError(
                "SESSIONS_API_KEYS must be a JSON list of objects", code="invalid_api_keys"
            )
        return [ApiKey.from_dict(r) for r in raw]
    out = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        parts = entry.split(":")
        if len(parts) != 4:
            raise ConfigurationError(
                "SESSIONS_API_KEYS entries read id:tenant:role:hash", code="invalid_api_keys"
            )
        out.append(ApiKey.from_dict(dict(zip(("id", "tenant", "role", "hash"), parts, strict=True))))
    return out


def load_keys_file(path: Path) -> list[ApiKey]:
    """The keys of a keys file; a missing file holds none."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"cannot read the keys file {path}: {e}", code="invalid_api_keys") from e
    entries = raw.get("keys") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not all(isinstance(r, dict) for r in entries):
        raise ConfigurationError(f'{path}: expected {{"keys": [...]}}', code="invalid_api_keys")
    return [ApiKey.from_dict(r) for r in entries]


def _write_keys_file(path: Path, keys: list[ApiKey]) -> None:
    """Atomically (a reader sees the old file or the new one, never half of one), readable by the owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"keys": [asdict(k) for k in keys]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_key(path: Path, tenant: str, role: str, name: str | None = None) -> tuple[ApiKey, str]:
    """Add a key to the file; returns it and the full key ``sk_<id>_<secret>``, which is never stored."""
    check_tenant(tenant)
    if role not in _RANK:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
    keys = load_keys_file(path)
    taken = {k.id for k in keys}
    key_id = secrets.token_hex(6)
    while key_id in taken:
        key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        id=key_id,
        tenant=tenant,
        role=role,
        hash=hash_secret(secret),
        name=name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _write_keys_file(path, [*keys, key])
    return key, f"sk_{key_id}_{secret}"


def revoke_key(path: Path, key_id: str) -> ApiKey:
    """Mark a key revoked (kept, so a listing shows it and a request with it says ``revoked_api_key``)."""
    keys = load_keys_file(path)
    for i, k in enumerate(keys):
        if k.id == key_id:
            if k.revoked_at is None:
                keys[i] = replace(k, revoked_at=datetime.now(UTC).isoformat(timespec="seconds"))
                _write_keys_file(path, keys)
            return keys[i]
    raise NotFound(f"no key {key_id!r} in {path}", code="key_not_found")


class KeyStore:
    """The keys in force: the environment's and the file's, the file re-read when it changed (checked at most
    every ``reload_interval_s``). A file that turns unreadable keeps the keys last read, and says so."""

    def __init__(
        self,
        path: Path | None = None,
        env_keys: list[ApiKey] | None = None,
        *,
        reload_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.env_keys = list(env_keys or [])
        self.reload_interval_s = reload_interval_s
        self.clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._checked = -float("inf")
        self._keys: dict[str, ApiKey] = {}
        self._load()

    @property
    def configured(self) -> bool:
        """Keys are in force (a keys file named counts even while it is missing: fail closed)."""
        return self.path is not None or bool(self.env_keys)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> None:
        file_keys: list[ApiKey] = []
        if self.path is not None:
            self._stamp = self._file_stamp()
            file_keys = load_keys_file(self.path)
        self._keys = {k.id: k for k in [*self.env_keys, *file_keys]}

    def refresh(self) -> None:
        now = self.clock()
        if self.path is None or now - self._checked < self.reload_interval_s:
            return
        self._checked = now
        if self._file_stamp() == self._stamp:
            return
        try:
            self._load()
        except ConfigurationError as e:
            log.error("sessions: keeping the API keys last read: %s", e.message)
        else:
            log.info("sessions: API keys reloaded from %s (%d in force)", self.path, len(self._keys))

    def keys(self) -> list[ApiKey]:
        self.refresh()
        return list(self._keys.values())

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` value (``Bearer sk_...``)."""
        if not authorization or not authorization.strip():
            raise Unauthenticated(
                "an API key is required: Authorization: Bearer <key>", code="missing_api_key"
            )
        scheme, _, token = authorization.strip().partition(" ")
        match = _KEY.match(token.strip()) if scheme.lower() == "bearer" else None
        if match is None:
            raise Unauthenticated("the API key is not valid", code="invalid_api_key")
        self.refresh()
        key = self._keys.get(match.group(1))
        digest = hash_secret(match.group(2))
        if not hmac.compare_digest(digest, key.hash if key is not None else _DUMMY_HASH) or key is None:
            raise Unauthenticated("the API key is not valid", code="invalid_api_key")
        if key.revoked_at is not None:
            raise Unauthenticated("the API key was revoked", code="revoked_api_key")
        return Principal(key_id=key.id, tenant=key.tenant, role=key.role)
