"""The application core: the log, the read model, commands, queries and read-your-writes, wired once.

Every adapter (HTTP now, gRPC later) holds one ``Application`` and calls ``app.commands`` / ``app.queries``.
``Application.open(settings)`` builds it from settings:

* embedded (no configuration): an in-process fakeredis log, the in-memory read model, a projector task;
* ``SESSION_STORAGE=postgres`` + ``DB_CONNECTION_STRING`` + ``REDIS_URL``: the real servers, with a projector
  task unless ``projector=False`` (then separate ``sessions project`` workers apply the log).

The in-process projector tells ``Consistency`` of each commit (its ``on_commit`` callback), so a waiting
read wakes the moment its position is applied instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from events.driver import redis_call
from events.errors import SessionsError, Unavailable
from events.log import EventLog, state_lost_error
from events.settings import redacted
from projections.api import PROJECTION, ReadModel, SessionRecord
from service.commands import Commands
from service.consistency import Consistency
from service.erasure import ForgetResult, forget_user
from service.errors import NotCaughtUp
from service.keyring import DataKeys
from service.metrics import Metrics
from service.operations import command
from service.queries import Queries
from service.request import Context
from service.settings import ServiceSettings

__all__ = ["RESUME_GRACE_S", "Application", "open_read_model"]

# How long a get-or-create that resumes a session not yet projected waits for its row (creation time and
# metadata) before it answers from the log alone: short, so a write never hangs on a stopped projector.
RESUME_GRACE_S = 0.25

log = logging.getLogger("service.app")


async def open_read_model(settings: ServiceSettings) -> ReadModel:
    """The read model the settings name, ready to use (PostgreSQL: pool open, migrations applied)."""
    from projections.settings import open_read_model as open_configured

    return await open_configured(settings.read_model)


def _listed(partitions: list[int]) -> str:
    return ", ".join(map(str, partitions))


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
            store=read_model,
            kek=self.settings.key_encryption_key(),
            timeout_s=log.timeout_s,
        )
        if self.settings.encryption and not self.data_keys.durable and not self.settings.embedded:
            logging.getLogger("service.app").warning(
                "sessions: no SESSIONS_KEK: the users' data keys live in Redis only, and a Redis that loses"
                " its data loses them (what they sealed then reads as erased)"
            )
        self.metrics = Metrics()
        self.commands = Commands(
            log,
            self.data_keys if self.settings.encryption else None,
            metrics=self.metrics,
            sessions=self._projected_session,
        )
        self.queries = Queries(
            log, read_model, self.consistency, self.data_keys, on_behind=self.metrics.read_timeouts.inc
        )
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
                await read_model.close()
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
        redis = redacted(self.settings.redis_url) if self.settings.redis_url else "fakeredis"
        return f"Redis log at {redis}, {where} read model, {proj}"

    async def start(self) -> None:
        if self.projector_enabled and self._task is None:
            from consumers.projector import Projector

            self._stop = asyncio.Event()
            # A short block keeps the leases fresh and a stop prompt; new entries wake XREAD at once anyway.
            self.projector = Projector(
                self.log, self.read_model, block_ms=100, on_commit=self.consistency.notify
            )
            self._task = asyncio.create_task(self._run_projector(), name="in-process projector")
            # Started means ready: wait (briefly) for its first lease round, so the partitions it can take
            # have an owner before the first readiness probe or read.
            first = asyncio.ensure_future(self.projector.first_round.wait())
            await asyncio.wait({first, self._task}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            first.cancel()

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
            await self.read_model.close()
            await self.log.close()

    async def __aenter__(self) -> Application:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @command("forget_user")
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

    async def _projected_session(
        self, tenant: str, session_id: str, at: dict[int, str | None]
    ) -> SessionRecord | None:
        """A resumed session's row, for what only the read model keeps (its creation time and metadata): as it
        is, or after a short grace (``RESUME_GRACE_S``) when the session is not projected yet; None after
        that, or when the read model cannot answer (the create answers from the log alone)."""
        try:
            row = await self.read_model.get_session(tenant, session_id)
            if row is None:
                with contextlib.suppress(NotCaughtUp):
                    await self.consistency.wait(at, min(RESUME_GRACE_S, self.settings.read_timeout_s))
                row = await self.read_model.get_session(tenant, session_id)
        except SessionsError as e:
            log.warning("resuming session %s without its row: %s", session_id, e)
            return None
        return row

    async def readiness(self) -> dict[str, str]:
        """What can be served; raises ``Unavailable`` with a code naming the first thing missing:

        * ``log_unreachable``: Redis does not answer;
        * ``log_state_lost``: the log is behind the read models (marked lost at start): writes are refused
          until ``sessions recover-log``;
        * ``log_not_configured``: a partition's config (the partition count and the limits the append
          script reads) is missing, as after a Redis that lost its data; ``partition_count_mismatch``: it
          names another partition count;
        * ``read_model_unreachable``, ``migrations_pending``: the read model;
        * ``projector_stopped``: the in-process projector died; ``partitions_unowned`` (with ``partitions``):
          no live projector (a held, unexpired lease) for those partitions, so their reads cannot be served.
        """
        checks: dict[str, str] = {}
        try:
            configs = await self.log.configs()
        except SessionsError as e:
            raise Unavailable(f"the log (Redis) is unreachable: {e}", code="log_unreachable") from e
        missing = [p for p, (count, _) in enumerate(configs) if count is None]
        if missing:
            raise Unavailable(
                f"the log is not configured for partitions {_listed(missing)} (a Redis that lost its data?)",
                code="log_not_configured",
                partitions=missing,
            )
        wrong = sorted({count for count, _ in configs if count is not None} - {self.log.partitions})
        if wrong:
            raise Unavailable(
                f"the log holds {wrong[0]} partitions; this service is configured for {self.log.partitions}",
                code="partition_count_mismatch",
            )
        if any(lost for _, lost in configs):
            raise state_lost_error()
        checks["log"] = "ok"
        try:
            await self.read_model.checkpoints(PROJECTION)
            pending = await self.read_model.pending_migrations()
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
        from consumers.leases import LeaseManager

        async with redis_call(self.log.timeout_s):
            leases = LeaseManager(
                self.log.redis,
                self.log.keys,
                self.log.partitions,
                projection=PROJECTION,
                worker_id="readiness",
            )
            states = await leases.states()
        unowned = [p for p, state in sorted(states.items()) if not state.live]
        if unowned:
            raise Unavailable(
                f"no live projector owns partitions {_listed(unowned)}: their reads cannot be served"
                + ("" if self._task is not None else "; start `sessions project` workers"),
                code="partitions_unowned",
                partitions=unowned,
            )
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
        except (ImportError, SessionsError) as e:
            log.warning("metrics: projection status unavailable: %s", e)
