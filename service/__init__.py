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
Who may call: ``security`` (API keys, the gate, the rate limit, bind policy). ``sdk``: the Python SDK.
"""

from service.app import Application
from service.settings import ServiceSettings

__all__ = ["Application", "ServiceSettings"]
