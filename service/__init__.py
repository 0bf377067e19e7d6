"""The service: one application core behind its adapters.

* ``service.app.Application``: the log, the read model, ``commands`` and ``queries``, read-your-writes;
* ``service.http.create_app``: the HTTP/JSON API (Litestar), ``service.grpc``: the gRPC API;
* ``service.sdk``: the Python SDK (``SessionsClient``, ``AsyncSessionsClient``);
* ``service.settings.ServiceSettings``: configuration from the environment; ``service.cli``: ``sessions``.
"""

from .app import Application
from .settings import ServiceSettings

__all__ = ["Application", "ServiceSettings"]
