"""An alias of the Python SDK, which is its own package: ``sessions_sdk`` (import that in new code).

``from service.sdk import SessionsClient`` keeps working and, like ``sessions_sdk``, loads nothing of the
server.
"""

from sessions_sdk import (
    API_KEY_ENV,
    DEFAULT_URL,
    AsyncSessionsClient,
    Call,
    SessionsClient,
    raise_for_problem,
)

__all__ = ["API_KEY_ENV", "DEFAULT_URL", "AsyncSessionsClient", "Call", "SessionsClient", "raise_for_problem"]
