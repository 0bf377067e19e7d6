"""Settings of the service: a frozen dataclass with defaults; ``from_env()`` reads the environment once.

Every environment variable the service reads is named here (the log's own are in ``events.settings``):

============================  ==============  ===============================================================
``SESSION_STORAGE``           ``memory``      ``memory``: in-memory read model; ``postgres``: PostgreSQL
``DB_CONNECTION_STRING``      (none)          PostgreSQL DSN, required with ``SESSION_STORAGE=postgres``
``REDIS_URL``                 (none)          the log's Redis; absent: an in-process fakeredis (embedded)
``SESSIONS_DB_SCHEMA``        ``public``      the PostgreSQL schema of the read models
``SESSIONS_HTTP_HOST``        ``127.0.0.1``   address the HTTP API binds to
``SESSIONS_HTTP_PORT``        ``8052``        port of the HTTP API
``SESSIONS_PORT``             ``50052``       port of the gRPC API (started beside HTTP by ``sessions serve``)
``SESSIONS_GRPC_HOST``        (HTTP host)     address the gRPC API binds to
``SESSIONS_READ_TIMEOUT_S``   ``2``           how long a read waits for the read model to reach its position
``SESSIONS_PROJECTOR``        ``1``           ``0``: do not run a projector in the API process
``SESSIONS_DEFAULT_TENANT``   ``default``     tenant of requests without an ``X-Tenant-Id`` header
``SESSIONS_LOG_LEVEL``        ``info``        log level of every ``sessions`` command (``LOG_FORMAT``)
``SESSIONS_ENCRYPTION``       ``on``          ``off``: store what users write in plain (``service.sealing``)
``SESSIONS_API_KEYS_FILE``    (none)          the keys file (``sessions keys``); with keys, every request
                                              needs one (``service.security``)
``SESSIONS_API_KEYS``         (none)          keys as ``id:tenant:role:hash`` entries, or a JSON list
``SESSIONS_RATE_LIMIT``       (none)          ``<rate>[/<burst>]`` requests a second per key (``limits``)
``SESSIONS_MAX_BODY_BYTES``   ``4194304``     largest request body (413 ``body_too_large``)
``SESSIONS_INSECURE_BIND``    ``0``           ``1``: allow a non-loopback bind with no keys configured
``SESSIONS_KEK``              (none)          the key-encryption key (base64 of 32 random bytes) that wraps
                                              the users' data keys kept beside the read models; without one
                                              they live in Redis only (``service.keyring``)
``SESSIONS_KEK_FILE``         (none)          a file holding that key instead (e.g. a mounted secret)
============================  ==============  ===============================================================

Plus the read model's (``projections/settings.py``): ``SESSIONS_DB_POOL_MIN``, ``SESSIONS_DB_POOL_MAX``,
``SESSIONS_DB_POOL_TIMEOUT_S``; and the log's (``events/settings.py``): ``SESSIONS_PARTITIONS``,
``SESSIONS_REDIS_PREFIX``, ``SESSIONS_DEDUP_WINDOW_S`` and the ``SESSIONS_MAX_*`` limits.

``from_env()`` refuses what it cannot use with ``ConfigurationError`` (``invalid_setting`` and the codes of
the two settings above), before anything connects or binds. The ``sessions`` command line
(``service/cli/``) reads the environment this way once per run, for every command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from events.settings import LogSettings
from projections.settings import ReadModelSettings
from service.errors import ConfigurationError
from service.security.ratelimit import RateLimit, parse_rate_limit
from service.validation import DEFAULT_MAX_BODY_BYTES

__all__ = ["ENV", "LOG_FORMAT", "LOG_LEVELS", "ServiceSettings"]

ENV = {
    # read by projections.settings.ReadModelSettings and events.settings.LogSettings:
    "storage": "SESSION_STORAGE",
    "db_connection_string": "DB_CONNECTION_STRING",
    "db_schema": "SESSIONS_DB_SCHEMA",
    "redis_url": "REDIS_URL",
    # read here:
    "http_host": "SESSIONS_HTTP_HOST",
    "http_port": "SESSIONS_HTTP_PORT",
    "grpc_port": "SESSIONS_PORT",
    "grpc_host": "SESSIONS_GRPC_HOST",
    "read_timeout_s": "SESSIONS_READ_TIMEOUT_S",
    "projector": "SESSIONS_PROJECTOR",
    "default_tenant": "SESSIONS_DEFAULT_TENANT",
    "log_level": "SESSIONS_LOG_LEVEL",
    "encryption": "SESSIONS_ENCRYPTION",
    "api_keys_file": "SESSIONS_API_KEYS_FILE",
    "api_keys": "SESSIONS_API_KEYS",
    "rate_limit": "SESSIONS_RATE_LIMIT",
    "max_body_bytes": "SESSIONS_MAX_BODY_BYTES",
    "insecure_bind": "SESSIONS_INSECURE_BIND",
    "kek": "SESSIONS_KEK",
    "kek_file": "SESSIONS_KEK_FILE",
}

_FALSE = {"0", "false", "no", "off"}

# One format for every line the process logs: ours, uvicorn's and Litestar's (service/cli, service/http).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    http_host: str = "127.0.0.1"
    http_port: int = 8052
    grpc_port: int = 50052
    grpc_host: str | None = None  # None: the HTTP host
    read_timeout_s: float = 2.0
    projector: bool = True
    default_tenant: str = "default"
    log_level: str = "info"
    encryption: bool = True  # seal message contents and memory values with per-user keys
    api_keys_file: str | None = None
    api_keys: str | None = None
    rate_limit: RateLimit | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    insecure_bind: bool = False
    kek: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log line
    kek_file: str | None = None
    log: LogSettings = field(default_factory=LogSettings)
    read_model: ReadModelSettings = field(default_factory=ReadModelSettings)

    def __post_init__(self) -> None:
        if self.read_timeout_s <= 0:
            raise ConfigurationError("SESSIONS_READ_TIMEOUT_S must be positive", code="invalid_setting")
        for name, port in (("http_port", self.http_port), ("grpc_port", self.grpc_port)):
            if not 0 <= port <= 65535:
                raise ConfigurationError(
                    f"{ENV[name]} must be a port number (0 to 65535), not {port}", code="invalid_setting"
                )
        if self.log_level not in LOG_LEVELS:
            raise ConfigurationError(
                f"{ENV['log_level']} must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}",
                code="invalid_setting",
            )
        self.key_encryption_key()  # a KEK that is set must be valid: refuse to start, not fail on a write

    def key_encryption_key(self) -> bytes | None:
        """The KEK (``SESSIONS_KEK`` or the file ``SESSIONS_KEK_FILE``), or None; ``ConfigurationError``
        (``invalid_kek``) when it is not base64 of 32 bytes."""
        from service.keyring import load_kek

        return load_kek(self.kek, self.kek_file)

    @property
    def storage(self) -> str:
        return self.read_model.storage

    @property
    def redis_url(self) -> str | None:
        return self.log.redis_url

    @property
    def embedded(self) -> bool:
        """Nothing outside the process: fakeredis and the in-memory read model."""
        return self.storage == "memory" and not self.log.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return env.get(ENV[name]) or None

        try:
            return cls(
                http_host=get("http_host") or "127.0.0.1",
                http_port=int(get("http_port") or 8052),
                grpc_port=int(get("grpc_port") or 50052),
                grpc_host=get("grpc_host"),
                read_timeout_s=float(get("read_timeout_s") or 2.0),
                projector=(get("projector") or "1").lower() not in _FALSE,
                default_tenant=get("default_tenant") or "default",
                log_level=(get("log_level") or "info").lower(),
                encryption=(get("encryption") or "on").lower() not in _FALSE,
                api_keys_file=get("api_keys_file"),
                api_keys=get("api_keys"),
                rate_limit=parse_rate_limit(get("rate_limit")),
                max_body_bytes=int(get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES),
                insecure_bind=(get("insecure_bind") or "0").lower() not in _FALSE,
                kek=get("kek"),
                kek_file=get("kek_file"),
                log=LogSettings.from_env(env),
                read_model=ReadModelSettings.from_env(env),
            )
        except ValueError as e:
            raise ConfigurationError(f"a setting is not a valid number: {e}", code="invalid_setting") from e
