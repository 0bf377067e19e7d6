"""The request context every operation carries: who asks, for which tenant, in which request. Copied into
every event's envelope.

Both adapters build it the same way (``context_of``) from the same three headers (HTTP) or metadata keys
(gRPC): ``x-tenant-id`` (fixed by ``service.security.gate.Gate``), ``x-actor`` (``kind:id``, kind one of
user, model, service, admin) and ``x-correlation-id``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

import msgspec

from events.schema import Actor, ActorKind
from service.errors import BadRequest

__all__ = ["ACTOR_KINDS", "Context", "acts_as_admin", "context_of", "parse_actor"]

ACTOR_KINDS: tuple[str, ...] = get_args(ActorKind)


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks, for which tenant, in which request (copied into every event's envelope)."""

    tenant: str = "default"
    actor: Actor | None = None  # None: the user the command concerns, or the service itself
    correlation_id: str | None = None

    def actor_for(self, user_id: str | None = None) -> Actor:
        if self.actor is not None:
            return self.actor
        if user_id is not None:
            return Actor(kind="user", id=user_id)
        return Actor()


def parse_actor(raw: str | None) -> Actor | None:
    """``kind:id`` (the ``x-actor`` header or metadata); absent or empty: None."""
    if not raw:
        return None
    kind, sep, actor_id = raw.partition(":")
    if not sep or kind not in ACTOR_KINDS or not actor_id:
        raise BadRequest(
            f"x-actor must be <kind>:<id>, kind one of {', '.join(ACTOR_KINDS)}", code="invalid_actor"
        )
    return Actor(kind=kind, id=actor_id)  # type: ignore[arg-type]


def acts_as_admin(raw: str | None) -> bool:
    """Whether an ``x-actor`` value claims an admin (checked against the key's role before anything runs)."""
    return bool(raw) and str(raw).partition(":")[0] == "admin"


def context_of(headers: Mapping[str, str], tenant: str) -> Context:
    """The context of a request from its headers or metadata, keys in lower case; ``tenant`` as the gate fixed
    it. Anything else (the gateway's ``x-target-service`` included) is ignored."""
    return Context(
        tenant=tenant,
        actor=parse_actor(headers.get("x-actor")),
        correlation_id=headers.get("x-correlation-id") or None,
    )
