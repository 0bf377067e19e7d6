"""Errors of the projector workers and their commands.

    SessionsError (events.errors)
    └── ConsumerError                  base of what consumers/ raises on purpose; code ``consumer_error``
        ├── NotCaughtUp                a burst run gave up before every partition reached its head
        └── CommandError               a CLI command cannot run: bad arguments, missing feature, refusal

Outages are ``events.errors.Unavailable`` (Redis) or the read model's own unavailable error: the worker waits
with backoff and retries them, it never turns them into a skip.
"""

from __future__ import annotations

from events.errors import SessionsError

__all__ = ["CommandError", "ConsumerError", "NotCaughtUp"]


class ConsumerError(SessionsError):
    code = "consumer_error"


class NotCaughtUp(ConsumerError):
    code = "not_caught_up"


class CommandError(ConsumerError):
    code = "command_error"
