"""The service: one application core behind thin adapters.

The core (no transport in it):

* ``app.Application``: the log, the read model, commands, queries and read-your-writes, wired once;
* ``commands``: validate, seal, append; ``queries``: wait for the projection, read, open;
* ``request.Context``: who asks, for which tenant, in which request; ``validation``: ids, keys, page sizes;
* ``consistency``: read-your-writes (positions and the bounded wait);
* ``windows``: context windows (``last_n``, ``token_budget``); ``sealing``, ``keyring``, ``unsealing``:
  encryption under per-user data keys; ``erasure``: forgetting a user;
* ``errors``, ``settings``, ``metrics``.

Adapters: ``http`` (HTTP/JSON, Litestar), ``grpc`` (the original ``SessionService``), ``cli`` (``sessions``).
Who may call: ``security`` (API keys, the gate, the rate limit, bind policy). ``sdk``: an alias of the Python
SDK, which is its own package (``sessions_sdk``).

``Application`` and ``ServiceSettings`` load on first use (PEP 562): importing a light module of the service
(``service.errors``, ``service.http.shapes``) does not load the application, its drivers or its adapters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from events import lazy

if TYPE_CHECKING:
    from service.app import Application
    from service.settings import ServiceSettings

__all__ = ["Application", "ServiceSettings"]

_HOME = {"Application": "app", "ServiceSettings": "settings"}


def __getattr__(name: str) -> Any:
    return lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
