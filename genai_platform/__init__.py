"""The original GenAI platform's Python SDK, for this Session Service (drop-in)::

from genai_platform import GenAIPlatform
platform = GenAIPlatform()  # GENAI_GATEWAY_URL, else localhost:50052
session = platform.sessions.get_or_create("user-123")
platform.sessions.add_messages(session.session_id, [{"role": "user", "content": "Hi"}])
messages, total = platform.sessions.get_messages(session.session_id, limit=20)

It loads gRPC and protobuf and nothing of the server (its errors come from the light ``events.errors`` and
``service.errors``); ``tests/test_light_imports.py`` keeps it so.
"""

from .errors import (
    AlreadyExistsError,
    ConflictError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    UnavailableError,
)
from .platform import ADDRESS_ENV, DEFAULT_ADDRESS, GenAIPlatform
from .sessions import Session, SessionClient

__all__ = [
    "ADDRESS_ENV",
    "DEFAULT_ADDRESS",
    "AlreadyExistsError",
    "ConflictError",
    "GenAIPlatform",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "PlatformError",
    "Session",
    "SessionClient",
    "UnavailableError",
]
