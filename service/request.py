"""The request context every operation carries: who asks, for which tenant, in which request. Copied into
every event's envelope."""

from __future__ import annotations

import msgspec

from events.schema import (
    Actor,
)

__all__ = ["Context"]


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
