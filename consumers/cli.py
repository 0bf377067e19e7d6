"""Commands of the ``sessions`` CLI that run or inspect the projectors: ``project``, ``status``,
``dead-letters``, ``trim``, ``rebuild``, ``migrate``.

``add_commands(subparsers)`` registers them on the one ``sessions`` parser (``service/cli/main.py`` calls
it). Every subparser sets ``handler``: a coroutine function of the parsed arguments and the settings (read
from the environment once by the CLI's bootstrap, ``service/cli/bootstrap.py``) returning the exit code. The
commands raise the project's errors (``CommandError`` for a wrong argument) and never print their own
failures: the bootstrap turns them into one line and an exit code, the same for every command.
``open_resources(settings)`` is how a command opens the log and the read model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol, TextIO

import msgspec

from events.driver import redis_call
from events.errors import ConfigurationError
from events.log import EventLog
from events.settings import LogSettings
from projections.api import PROJECTION, ReadModel
from projections.settings import ReadModelSettings

from .errors import CommandError
from .leases import LeaseManager
from .progress import Progress
from .projector import Projector, host_prefix
from .status import PartitionStatus, partition_status
from .trim import TrimResult, trim_partitions

__all__ = ["StoreSettings", "add_commands", "open_resources"]

_ALL = 1_000_000  # "every dead letter" for a listing; far more than any deployment should ever hold


class StoreSettings(Protocol):
    """What the commands need of the settings (``service.settings.ServiceSettings`` has it)."""

    @property
    def log(self) -> LogSettings: ...

    @property
    def read_model(self) -> ReadModelSettings: ...


@contextlib.asynccontextmanager
async def open_resources(settings: StoreSettings) -> AsyncIterator[tuple[EventLog, ReadModel]]:
    """The log and the read model the settings name; closed on exit."""
    from projections.settings import open_read_model

    log = EventLog.connect(settings.log)
    try:
        await _check_partitions(log)
        read_model = await open_read_model(settings.read_model)
        try:
            yield log, read_model
        finally:
            await read_model.close()
    finally:
        await log.close()


async def _check_partitions(log: EventLog) -> None:
    """A worker or a trim with the wrong partition count would silently miss partitions: refuse it."""
    async with redis_call(log.timeout_s):
        found = await log.redis.hget(log.keys.config(0), "partitions")
    if found is not None and int(found) != log.partitions:
        raise ConfigurationError(
            f"this Redis holds a log of {int(found)} partitions under prefix {log.settings.prefix!r}, but "
            f"SESSIONS_PARTITIONS says {log.partitions}",
            code="partition_count_mismatch",
        )


# -- project ----------------------------------------------------------------------------------------------
async def _project(args: argparse.Namespace, settings: StoreSettings) -> int:
    async with open_resources(settings) as (log, read_model):
        if args.check:
            return await _check(log, read_model, args.worker_id)
        projector = Projector(
            log,
            read_model,
            worker_id=args.worker_id,
            batch_size=args.batch_size,
            block_ms=args.block_ms,
            lease_ttl_ms=args.lease_ttl_ms,
            concurrency=args.concurrency,
        )
        # What is alive now (modules, pools) lives as long as the process: frozen, the garbage collector's
        # full passes do not scan it again and again while batches churn (bench project: ~2/3 of GC time).
        gc.collect()
        gc.freeze()
        if args.burst:
            started = time.monotonic()
            stats = await projector.run_until_caught_up(timeout_s=args.timeout)
            elapsed = time.monotonic() - started
            print(
                f"caught up: {stats.applied} events ({stats.messages} messages) in {elapsed:.1f}s, "
                f"{stats.dead_lettered} dead-lettered, worker {projector.worker_id}"
            )
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await projector.run(stop)
        return 0


async def _check(log: EventLog, read_model: ReadModel, worker_id: str | None) -> int:
    """Healthy (0): Redis and the read model answer, and THIS worker is live: ``worker_id``, or else a worker
    of this host with a default id (``<hostname>-<pid>-<random>``; in a container, the one it runs in).
    Another worker being live says nothing about this one."""
    await read_model.checkpoints(PROJECTION)
    workers = await LeaseManager(
        log.redis, log.keys, log.partitions, projection=PROJECTION, worker_id="check"
    ).workers()
    if worker_id:
        who, mine = worker_id, [w for w in workers if w == worker_id]
    else:
        host = host_prefix()
        who, mine = f"a worker of this host ({host}*)", [w for w in workers if w.startswith(host)]
    live = bool(mine)
    print(
        f"{'ok' if live else 'unhealthy'}: {who} {'is' if live else 'is not'} live "
        f"({', '.join(mine) or 'live: ' + (', '.join(workers) or 'none')})"
    )
    return 0 if live else 1


# -- status -----------------------------------------------------------------------------------------------
def _fmt_status(rows: list[PartitionStatus], workers: list[str], dead: int, out: TextIO) -> None:
    print(
        f"{'part':>4}  {'head':<16}  {'checkpoint':<16}  {'lag':>7}  {'lag_s':>7}  {'epoch':>5}  owner",
        file=out,
    )
    for r in rows:
        lag = f"{r.lag_events}{'+' if r.lag_capped else ''}"
        print(
            f"{r.partition:>4}  {r.head or '-':<16}  {r.checkpoint or '-':<16}  {lag:>7}  "
            f"{r.lag_seconds:>7.1f}  {r.epoch:>5}  {r.owner or '-'}",
            file=out,
        )
    total = sum(r.lag_events for r in rows)
    print(f"lag: {total} events; workers: {', '.join(workers) or 'none'}; dead letters: {dead}", file=out)


async def _status(args: argparse.Namespace, settings: StoreSettings) -> int:
    async with open_resources(settings) as (log, read_model):
        rows = await partition_status(log, read_model, lag_cap=args.lag_cap)
        workers = await LeaseManager(
            log.redis, log.keys, log.partitions, projection=PROJECTION, worker_id="status"
        ).workers()
        dead = len(await read_model.dead_letters(limit=_ALL))
        if args.json:
            doc = {"partitions": rows, "workers": workers, "dead_letters": dead}
            print(msgspec.json.encode(doc).decode())
        else:
            _fmt_status(rows, workers, dead, sys.stdout)
        return 0


# -- dead letters ---------------------------------------------------------------------------------------
async def _dead_letters(args: argparse.Namespace, settings: StoreSettings) -> int:
    async with open_resources(settings) as (log, read_model):
        if args.action == "list":
            letters = await read_model.dead_letters(limit=args.limit, include_retried=args.all)
            for d in letters:
                flag = " (retried)" if d.retried else ""
                print(
                    f"{d.id}  p{d.partition} {d.position}  {d.type or '-'}  attempts={d.attempts}  "
                    f"{d.created_at.isoformat()}{flag}  {d.error}"
                )
            print(f"{len(letters)} dead letter(s)", file=sys.stderr)
            return 0
        return await _retry(log, read_model, [int(i) for i in args.ids])


async def _retry(log: EventLog, read_model: ReadModel, ids: list[int]) -> int:
    """Retry by rebuilding: every dead letter is re-applied at its place in the log, so the result equals a
    build that had the fix from the start (applying one late, after its successors, would not). Those the
    fix made applicable leave the dead-letter list; the others are dead-lettered again."""
    from projections.rebuild import rebuild

    letters = await read_model.dead_letters(limit=_ALL)
    by_id = {d.id: d for d in letters}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise CommandError(f"no pending dead letter with id {', '.join(map(str, missing))}", code="not_found")
    targets = [by_id[i] for i in ids] if ids else letters
    if not targets:
        print("no dead letters to retry", file=sys.stderr)
        return 0
    bar = Progress(sys.stderr, "retry (rebuild)")
    await rebuild(read_model, log, progress=lambda p: bar.update(p.done, p.total), resume=False)
    bar.close()
    still = {(d.partition, d.position): d for d in await read_model.dead_letters(limit=_ALL)}
    failed = 0
    for d in targets:
        again = still.get((d.partition, d.position))
        failed += again is not None
        print(
            f"{d.id}: p{d.partition} {d.position} "
            + (f"still failing: {again.error}" if again else "applied")
        )
    print(f"{len(targets) - failed} applied, {failed} still failing", file=sys.stderr)
    return 1 if failed else 0


# -- trim -------------------------------------------------------------------------------------------------
async def _trim(args: argparse.Namespace, settings: StoreSettings) -> int:
    if args.keep is None and args.keep_seconds is None:
        # With no window, every projected entry would go: a retention is a decision, never a default.
        raise CommandError(
            "trim needs an explicit retention: --keep N (the newest N entries of each partition stay),"
            " --keep-seconds S (the entries of the last S seconds stay), or --keep 0 (everything already"
            " projected goes)",
            code="retention_required",
        )

    def show(r: TrimResult) -> None:
        what = f"removed {r.removed}" if r.min_id else "left alone (no checkpoint or inside the window)"
        print(f"trim: partition {r.partition}: {what}, {r.remaining} left", file=sys.stderr)

    stop = asyncio.Event()
    if args.every:
        # As a long-running trimmer, SIGTERM or Ctrl-C between two rounds is the normal way to stop: exit 0.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    async with open_resources(settings) as (log, read_model):
        while True:
            results = await trim_partitions(
                log, read_model, keep=args.keep, keep_seconds=args.keep_seconds, progress=show
            )
            print(
                f"trimmed {sum(r.removed for r in results)} entries from {len(results)} partitions",
                flush=True,
            )
            if not args.every:
                return 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.every)
            if stop.is_set():
                return 0


# -- rebuild and migrate ----------------------------------------------------------------------------------
async def _rebuild(args: argparse.Namespace, settings: StoreSettings) -> int:
    from projections.rebuild import rebuild

    async with open_resources(settings) as (log, read_model):
        bar = Progress(sys.stderr, "rebuild")
        try:
            result = await rebuild(
                read_model,
                log,
                progress=lambda p: bar.update(p.done, p.total),
                resume=args.resume,
                batch=args.batch_size,
            )
        except asyncio.CancelledError:
            # Ctrl-C: every batch is its own transaction, so the shadow holds whole batches.
            print("\nrebuild: cancelled; `sessions rebuild --resume` continues it", file=sys.stderr)
            raise
        bar.close()
        print(f"rebuilt: {result}")
        return 0


async def _recover_log(args: argparse.Namespace, settings: StoreSettings) -> int:
    """``recover-log``: restore the log's state from the archive (``consumers.recover``), with progress."""
    from .recover import recover_log

    async with open_resources(settings) as (log, read_model):
        bar = Progress(sys.stderr, "recover-log")
        result = await recover_log(log, read_model, progress=bar.update)
        bar.close()
        print(f"recovered: {result}; writes are accepted again")
        return 0


async def _migrate(args: argparse.Namespace, settings: StoreSettings) -> int:
    from projections.settings import migrate

    applied: Any = await migrate(settings.read_model)
    print(f"migrations applied: {applied or 'none (up to date)'}")
    return 0


# -- registration ---------------------------------------------------------------------------------------
def _at_least(low: float, kind: type[int] | type[float] = int) -> Any:
    """An argparse type: a number of ``kind`` no smaller than ``low``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, not {text}")
        return value

    return parse


def add_commands(subparsers: Any) -> None:
    """Register ``project``, ``status``, ``dead-letters``, ``trim``, ``rebuild``, ``migrate`` and
    ``recover-log``."""
    p = subparsers.add_parser("project", help="run a projector worker (until SIGTERM, or --burst)")
    p.add_argument(
        "--burst",
        action="store_true",
        help="exit 0 once every partition is at its head (whoever projects it)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="health check: exit 0 if this worker (--worker-id, else one of this host) is live",
    )
    p.add_argument("--worker-id", default=None, help="this worker's id (default: host-pid-random)")
    p.add_argument("--batch-size", type=int, default=2000, help="entries per transaction at most")
    p.add_argument("--block-ms", type=int, default=200)
    p.add_argument("--lease-ttl-ms", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=4, help="partitions applied at once")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="with --burst: after this many seconds, exit 1 naming the partitions still behind",
    )
    p.set_defaults(handler=_project)

    s = subparsers.add_parser("status", help="per partition: head, checkpoint, lag, lease owner")
    s.add_argument("--json", action="store_true")
    s.add_argument("--lag-cap", type=int, default=10_000, help="count lag events up to this many")
    s.set_defaults(handler=_status)

    d = subparsers.add_parser("dead-letters", help="list or retry dead-lettered events")
    d.add_argument("action", choices=["list", "retry"])
    d.add_argument(
        "ids",
        nargs="*",
        type=_at_least(1),
        help="with retry: the ids to report on (a retry rebuilds, which retries them all)",
    )
    d.add_argument("--all", action="store_true", help="with list: include those already retried")
    d.add_argument("--limit", type=int, default=100)
    d.set_defaults(handler=_dead_letters)

    t = subparsers.add_parser(
        "trim",
        help="trim the Redis streams below the durable checkpoints (needs --keep N or --keep-seconds S)",
    )
    window = t.add_mutually_exclusive_group()
    window.add_argument(
        "--keep",
        type=_at_least(0),
        default=None,
        help="keep at least the newest N entries per partition (0: trim everything projected)",
    )
    window.add_argument(
        "--keep-seconds",
        type=_at_least(0, float),
        default=None,
        help="keep the entries of the last S seconds",
    )
    t.add_argument(
        "--every", type=_at_least(0.001, float), default=None, help="repeat every S seconds (until Ctrl-C)"
    )
    t.set_defaults(handler=_trim)

    r = subparsers.add_parser("rebuild", help="rebuild the read models from the archive and the log")
    r.add_argument("--resume", action="store_true", help="continue an interrupted rebuild")
    r.add_argument("--batch-size", type=int, default=1000, help="entries per transaction")
    r.set_defaults(handler=_rebuild)

    m = subparsers.add_parser("migrate", help="apply the read models' schema migrations")
    m.set_defaults(handler=_migrate)

    rl = subparsers.add_parser(
        "recover-log", help="restore the log's state from the archive after Redis lost it"
    )
    rl.set_defaults(handler=_recover_log)
