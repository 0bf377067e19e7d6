"""The application core: the log, the read model, commands, queries and read-your-writes, wired once.

Every adapter (HTTP now, gRPC later) holds one ``Application`` and calls ``app.commands`` / ``app.queries``.
``Application.open(settings)`` builds it from settings:

* embedded (no configuration): an in-process fakeredis log, the in-memory read model, a projector task;
* ``SESSION_STORAGE=postgres`` + ``DB_CONNECTION_STRING`` + ``REDIS_URL``: the real servers, with a projector
  task unless ``projector=False`` (then separate ``sessions project`` workers apply the log).

The in-process projector writes through ``NotifyingReadModel``, so a waiting read wakes the moment its
position is applied instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError

from events.errors import SessionsError, Unavailable
from events.log import EventLog
from projections.api import PROJECTION, ReadModel
from service.commands import Commands
from service.consistency import Consistency, NotifyingReadModel
from service.erasure import ForgetResult, forget_user
from service.keyring import DataKeys, KeyStore
from service.metrics import Metrics
from service.queries import Queries
from service.request import Context
from service.settings import ServiceSettings

__all__ = ["Application", "open_read_model"]

log = logging.getLogger("service.app")


async def open_read_model(settings: ServiceSettings) -> ReadModel:
    """The read model the settings name, ready to use (PostgreSQL: pool open, migrations applied)."""
    from projections.settings import open_read_model as open_configured

    return await open_configured(settings.read_model)


async def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is None:
        return
    result = close()
    if asyncio.iscoroutine(result):
        await result


async def _pending_migrations(read_model: ReadModel) -> list[int]:
    """Migrations shipped but not applied to a PostgreSQL read model's schema (none for the in-memory one)."""
    pool, schema = getattr(read_model, "pool", None), getattr(read_model, "schema", None)
    if pool is None or not isinstance(schema, str):
        return []
    from projections.migrations import check_schema_name, migrations

    async with pool.connection() as conn:
        cur = await conn.execute(f'SELECT version FROM "{check_schema_name(schema)}".schema_migrations')
        applied = {int(row[0]) for row in await cur.fetchall()}
    return [m.version for m in migrations() if m.version not in applied]


class Application:
    """Log + read model + commands + queries. Use ``async with await Application.open(settings)`` or
    construct it from parts (tests do) and call ``start()`` / ``close()``."""

    def __init__(
        self,
        log: EventLog,
        read_model: ReadModel,
        *,
        settings: ServiceSettings | None = None,
        projector: bool = False,
        owns_resources: bool = False,
    ) -> None:
        self.settings = settings or ServiceSettings()
        self.log = log
        self.read_model = read_model
        self.consistency = Consistency(read_model, self.settings.read_timeout_s)
        # One key cache for both sides, so an erasure takes effect at once in this process.
        self.data_keys = DataKeys(
            log.redis,
            log.keys,
            store=read_model if isinstance(read_model, KeyStore) else None,
            kek=self.settings.key_encryption_key(),
        )
        if self.settings.encryption and not self.data_keys.durable and not self.settings.embedded:
            logging.getLogger("service.app").warning(
                "sessions: no SESSIONS_KEK: the users' data keys live in Redis only, and a Redis that loses"
                " its data loses them (what they sealed then reads as erased)"
            )
        self.commands = Commands(log, self.data_keys if self.settings.encryption else None)
        self.queries = Queries(log, read_model, self.consistency, self.data_keys)
        self.metrics = Metrics()
        self.projector_enabled = projector
        self.projector: Any = None
        self._owns = owns_resources
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: ServiceSettings) -> Application:
        """Connect to what the settings name, set the log up, and start the in-process projector."""
        event_log = EventLog.connect(settings.log)
        try:
            read_model = await open_read_model(settings)
            try:
                # With the read models' checkpoints: a log behind them lost its state (writes refused).
                applied = {p: cp.position for p, cp in (await read_model.checkpoints()).items()}
                if await event_log.setup(applied):
                    log.warning(
                        "sessions: the log is behind the read models (Redis lost its data?): writes are"
                        " refused (503 log_state_lost) until `sessions recover-log`"
                    )
            except BaseException:
                await _close(read_model)
                raise
        except BaseException:
            await event_log.close()
            raise
        app = cls(
            event_log,
            read_model,
            settings=settings,
            projector=settings.projector or settings.storage == "memory",
            owns_resources=True,
        )
        await app.start()
        return app

    @property
    def mode(self) -> str:
        if self.settings.embedded:
            return "embedded (fakeredis log, in-memory read model, in-process projector)"
        where = "PostgreSQL" if self.settings.storage == "postgres" else "in-memory"
        proj = "in-process projector" if self.projector_enabled else "no projector in this process"
        return f"Redis log at {self.settings.redis_url or 'fakeredis'}, {where} read model, {proj}"

    async def start(self) -> None:
        if self.projector_enabled and self._task is None:
            from consumers.projector import Projector

            self._stop = asyncio.Event()
            # A short block keeps the leases fresh and a stop prompt; new entries wake XREAD at once anyway.
            self.projector = Projector(
                self.log, NotifyingReadModel(self.read_model, self.consistency), block_ms=100
            )
            self._task = asyncio.create_task(self._run_projector(), name="in-process projector")

    async def _run_projector(self) -> None:
        try:
            await self.projector.run(self._stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the in-process projector stopped")
            raise

    async def close(self) -> None:
        if self._task is not None:
            self._stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
            self._task = None
        if self._owns:
            await _close(self.read_model)
            await self.log.close()

    async def __aenter__(self) -> Application:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def forget_user(self, ctx: Context, user_id: str, *, rewrite_aof: bool = False) -> ForgetResult:
        """Erase a user (``service.erasure.forget_user``): sessions deleted, data key destroyed, read-model
        rows removed, a ``user.forgotten.v1`` event in the audit trail."""
        return await forget_user(
            self.log,
            self.read_model,
            self.consistency,
            self.commands,
            self.data_keys,
            ctx,
            user_id,
            rewrite_aof=rewrite_aof,
        )

    async def readiness(self) -> dict[str, str]:
        """What is reachable; raises ``Unavailable`` naming the first thing that is not."""
        checks: dict[str, str] = {}
        try:
            await self.log.redis.ping()
        except Exception as e:
            raise Unavailable(f"the log (Redis) is unreachable: {e}", code="log_unreachable") from e
        checks["log"] = "ok"
        try:
            await self.read_model.checkpoints(PROJECTION)
            pending = await _pending_migrations(self.read_model)
        except SessionsError:
            raise
        except Exception as e:
            raise Unavailable(f"the read model is unreachable: {e}", code="read_model_unreachable") from e
        if pending:
            raise Unavailable(
                f"the read model's schema lacks migrations {pending}; run `sessions migrate`",
                code="migrations_pending",
            )
        checks["read_model"] = "ok"
        if self._task is not None and self._task.done():
            raise Unavailable("the in-process projector has stopped", code="projector_stopped")
        checks["projector"] = "in-process" if self._task is not None else "external"
        return checks

    async def refresh_metrics(self) -> None:
        """Projector lag per partition and dead letters, for a scrape. Best effort: a scrape never fails."""
        try:
            from consumers.status import partition_status

            for st in await partition_status(self.log, self.read_model, lag_cap=1000):
                self.metrics.set_lag(st.partition, st.lag_events, st.lag_seconds)
            dead = await self.read_model.dead_letters(limit=10_000)
            self.metrics.dead_letters.set(len(dead))
        except (ImportError, SessionsError, RedisError, OSError) as e:
            log.warning("metrics: projection status unavailable: %s", e)
