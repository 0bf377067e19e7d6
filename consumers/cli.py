"""Commands of the ``sessions`` CLI that run or inspect the projectors.

``add_commands(subparsers)`` registers them on the ``sessions`` parser (``service/cli.py`` calls it); every
subparser sets ``handler``, a function of the parsed arguments returning the exit code, so the entry point
runs ``sys.exit(args.handler(args))``. ``python -m consumers <command>`` runs the same commands on their own.

Configuration comes from the environment only (``events.settings.LogSettings.from_env()`` and
``projections.settings.ReadModelSettings.from_env()``). A failure prints one line, ``sessions: <message>
[<code>]``, on stderr and exits non-zero: 1 for a refusal or an outage, 2 for bad usage, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from events.errors import ConfigurationError, SessionsError, Unavailable
from events.log import EventLog
from events.settings import LogSettings
from projections.api import PROJECTION, ReadModel

from .errors import CommandError
from .leases import LeaseManager
from .progress import Progress
from .projector import Projector
from .status import PartitionStatus, partition_status
from .trim import TrimResult, trim_partitions

__all__ = ["add_commands", "main", "open_resources"]

Handler = Callable[[argparse.Namespace], int]
_ALL = 1_000_000  # "every dead letter" for a listing; far more than any deployment should ever hold


@contextlib.asynccontextmanager
async def open_resources() -> AsyncIterator[tuple[EventLog, ReadModel]]:
    """The log and the read model the environment configures; closed on exit."""
    from projections.settings import ReadModelSettings, open_read_model

    log = EventLog.connect(LogSettings.from_env())
    try:
        await _check_partitions(log)
        read_model = await open_read_model(ReadModelSettings.from_env())
        try:
            yield log, read_model
        finally:
            close = getattr(read_model, "close", None)
            if close is not None:
                await close()
    finally:
        await log.close()


async def _check_partitions(log: EventLog) -> None:
    """A worker or a trim with the wrong partition count would silently miss partitions: refuse it."""
    try:
        found = await log.redis.hget(log.keys.config(0), "partitions")
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise Unavailable(f"cannot reach Redis: {e}") from e
    if found is not None and int(found) != log.partitions:
        raise ConfigurationError(
            f"this Redis holds a log of {int(found)} partitions under prefix {log.settings.prefix!r}, but "
            f"SESSIONS_PARTITIONS says {log.partitions}",
            code="partition_count_mismatch",
        )


def _run(body: Callable[[argparse.Namespace], Awaitable[int]]) -> Handler:
    """Wrap a command: one-line errors, never a traceback."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(body(args))  # type: ignore[arg-type]
        except KeyboardInterrupt:
            print("sessions: interrupted", file=sys.stderr)
            return 130
        except CommandError as e:
            print(f"sessions: {e.message} [{e.code}]", file=sys.stderr)
            return 2
        except SessionsError as e:
            print(f"sessions: {e.message} [{e.code}]", file=sys.stderr)
            return 1
        except ValueError as e:
            print(f"sessions: {e} [invalid_setting]", file=sys.stderr)
            return 2
        except Exception as e:
            print(f"sessions: unexpected {type(e).__name__}: {e} [internal_error]", file=sys.stderr)
            return 1

    return handler


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")


# -- project ----------------------------------------------------------------------------------------------
async def _project(args: argparse.Namespace) -> int:
    async with open_resources() as (log, read_model):
        if args.check:
            return await _check(log, read_model, args.worker_id)
        _setup_logging()
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
    """Healthy (0): Redis and the read model answer, and a projector (``worker_id``, or any) is live."""
    await read_model.checkpoints(PROJECTION)
    workers = await LeaseManager(
        log.redis, log.keys, log.partitions, projection=PROJECTION, worker_id="check"
    ).workers()
    live = worker_id in workers if worker_id else bool(workers)
    who = worker_id or "any projector worker"
    print(f"{'ok' if live else 'unhealthy'}: {who} {'is' if live else 'is not'} live ({len(workers)} live)")
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


async def _status(args: argparse.Namespace) -> int:
    async with open_resources() as (log, read_model):
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
async def _dead_letters(args: argparse.Namespace) -> int:
    async with open_resources() as (log, read_model):
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
async def _trim(args: argparse.Namespace) -> int:
    def show(r: TrimResult) -> None:
        what = f"removed {r.removed}" if r.min_id else "left alone (no checkpoint or inside the window)"
        print(f"trim: partition {r.partition}: {what}, {r.remaining} left", file=sys.stderr)

    stop = asyncio.Event()
    if args.every:
        # As a long-running trimmer, SIGTERM or Ctrl-C between two rounds is the normal way to stop: exit 0.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    async with open_resources() as (log, read_model):
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
async def _rebuild(args: argparse.Namespace) -> int:
    from projections.rebuild import rebuild

    async with open_resources() as (log, read_model):
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
            print("\nsessions: rebuild cancelled; `rebuild --resume` continues it", file=sys.stderr)
            raise
        bar.close()
        print(f"rebuilt: {result}")
        return 0


async def recover_log_command(args: argparse.Namespace) -> int:
    """``recover-log``: restore the log's state from the archive (``consumers.recover``), with progress."""
    from .recover import recover_log

    async with open_resources() as (log, read_model):
        bar = Progress(sys.stderr, "recover-log")
        result = await recover_log(log, read_model, progress=bar.update)
        bar.close()
        print(f"recovered: {result}; writes are accepted again")
        return 0


async def _migrate(args: argparse.Namespace) -> int:
    from projections.settings import ReadModelSettings, migrate

    applied: Any = await migrate(ReadModelSettings.from_env())
    print(f"migrations applied: {applied or 'none (up to date)'}")
    return 0


# -- registration ---------------------------------------------------------------------------------------
def add_commands(subparsers: Any) -> None:
    """Register ``project``, ``status``, ``dead-letters``, ``trim``, ``rebuild``, ``migrate`` and
    ``recover-log``."""
    p = subparsers.add_parser("project", help="run a projector worker (until SIGTERM, or --burst)")
    p.add_argument("--burst", action="store_true", help="exit once the owned partitions are caught up")
    p.add_argument("--check", action="store_true", help="health check: exit 0 if a projector worker is live")
    p.add_argument("--worker-id", default=None, help="this worker's id (default: host-pid-random)")
    p.add_argument("--batch-size", type=int, default=2000, help="entries per transaction at most")
    p.add_argument("--block-ms", type=int, default=200)
    p.add_argument("--lease-ttl-ms", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=4, help="partitions applied at once")
    p.add_argument(
        "--timeout", type=float, default=None, help="with --burst: give up after this many seconds"
    )
    p.set_defaults(handler=_run(_project))

    s = subparsers.add_parser("status", help="per partition: head, checkpoint, lag, lease owner")
    s.add_argument("--json", action="store_true")
    s.add_argument("--lag-cap", type=int, default=10_000, help="count lag events up to this many")
    s.set_defaults(handler=_run(_status))

    d = subparsers.add_parser("dead-letters", help="list or retry dead-lettered events")
    d.add_argument("action", choices=["list", "retry"])
    d.add_argument(
        "ids", nargs="*", help="with retry: the ids to report on (a retry rebuilds, which retries them all)"
    )
    d.add_argument("--all", action="store_true", help="with list: include those already retried")
    d.add_argument("--limit", type=int, default=100)
    d.set_defaults(handler=_run(_dead_letters))

    t = subparsers.add_parser("trim", help="trim the Redis streams below the durable checkpoints")
    window = t.add_mutually_exclusive_group()
    window.add_argument(
        "--keep", type=int, default=None, help="keep at least the newest N entries per partition"
    )
    window.add_argument(
        "--keep-seconds", type=float, default=None, help="keep the entries of the last S seconds"
    )
    t.add_argument("--every", type=float, default=None, help="repeat every S seconds (until Ctrl-C)")
    t.set_defaults(handler=_run(_trim))

    r = subparsers.add_parser("rebuild", help="rebuild the read models from the archive and the log")
    r.add_argument("--resume", action="store_true", help="continue an interrupted rebuild")
    r.add_argument("--batch-size", type=int, default=1000, help="entries per transaction")
    r.set_defaults(handler=_run(_rebuild))

    m = subparsers.add_parser("migrate", help="apply the read models' schema migrations")
    m.set_defaults(handler=_run(_migrate))

    rl = subparsers.add_parser(
        "recover-log", help="restore the log's state from the archive after Redis lost it"
    )
    rl.set_defaults(handler=_run(recover_log_command))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers", description="Projector workers and tools.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)
