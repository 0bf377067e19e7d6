"""The big fault test: a projector PROCESS (``python -m consumers project``) killed with SIGKILL every few
hundred events while 20,000+ events are ingested through ``EventLog.append``; at the end the PostgreSQL read
models equal a fresh rebuild and a plain model of the commands: nothing lost, nothing doubled, versions
contiguous. Then SIGTERM: the batch in hand is committed, the leases released, exit 0.

Real Redis and real PostgreSQL (a fresh key prefix and a fresh schema)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consumers.leases import LeaseManager
from consumers.projector import Projector
from events import EventLog, LogSettings
from events.schema import Event
from projections.api import PROJECTION
from projections.memory import InMemoryReadModel
from tests.events.factories import added, created, msg, saved
from tests.fix_redis import delete_prefix, real_redis

from .pg import open_pg_read_model, projector_env

PARTITIONS = 8
TARGET_EVENTS = int(os.environ.get("FAULT_TEST_EVENTS", "20000"))
KILL_EVERY = 400  # events ingested between two SIGKILLs (randomised around it)


class CommandModel:
    """What the commands should leave behind, kept while they are sent."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.messages: dict[str, list[str]] = {}
        self.owner: dict[str, str] = {}
        self.versions: dict[str, int] = defaultdict(int)
        self.memory: dict[tuple[str, str], Any] = {}  # (user, key) -> value, user scope
        self.events = 0
        self.counter = 0

    def next_appends(self, count: int) -> list[list[Event]]:
        out: list[list[Event]] = []
        for _ in range(count):
            self.counter += 1
            n = self.counter
            r = self.rng.random()
            if not self.messages or r < 0.04:
                sid, user = f"s{len(self.messages)}", f"u{len(self.messages) % 37}"
                self.messages[sid], self.owner[sid] = [], user
                out.append([created(sid, user)])
            elif r < 0.10:
                user = f"u{self.rng.randrange(37)}"
                self.memory[(user, f"k{n % 5}")] = n
                out.append([saved(user, f"k{n % 5}", n)])
                continue
            else:
                sid = self.rng.choice(list(self.messages))
                texts = [f"{sid}-{n}-{i}" for i in range(self.rng.randint(1, 3))]
                self.messages[sid].extend(texts)
                roles = ["user", "assistant"]
                out.append([added(sid, *(msg(roles[i % 2], t) for i, t in enumerate(texts)))])
            self.versions[sid] += 1
        self.events += len(out)
        return out


class ProjectorProcess:
    """``python -m consumers project`` as a child process; its stderr goes to a file (a pipe nobody reads
    could fill up and stall it)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_file(self) -> Path:
        return self.logs / f"projector-{self.starts}.log"

    def start(self, worker_id: str) -> None:
        self.starts += 1
        with self.log_file.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "consumers",
                    "project",
                    "--worker-id",
                    worker_id,
                    "--lease-ttl-ms",
                    "1000",
                    "--batch-size",
                    "100",
                    "--block-ms",
                    "50",
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.log_file.read_text()


@pytest.fixture
async def log_on_redis(key_prefix: str) -> AsyncIterator[EventLog]:
    client = await real_redis()
    log = EventLog(client, LogSettings(prefix=key_prefix, partitions=PARTITIONS))
    await log.setup()
    yield log
    await delete_prefix(client, key_prefix)
    await client.aclose()


async def progress_marker(read_model: Any) -> list[tuple[int, str | None]]:
    cps = await read_model.checkpoints(PROJECTION)
    return sorted((p, cp.position) for p, cp in cps.items())


@pytest.mark.slow
async def test_projector_process_killed_again_and_again_loses_and_doubles_nothing(
    log_on_redis: EventLog, pg_schema: str, key_prefix: str, tmp_path: Path
) -> None:
    log = log_on_redis
    rm = await open_pg_read_model(pg_schema)
    env = projector_env(pg_schema, key_prefix, PARTITIONS)
    model = CommandModel(seed=20_000)
    proc = ProjectorProcess(env, tmp_path)
    rng = random.Random(1)
    kills = 0
    try:
        watcher = LeaseManager(log.redis, log.keys, PARTITIONS, projection=PROJECTION, worker_id="t")
        last_id = "w0"
        proc.start(last_id)
        while model.events < TARGET_EVENTS:
            chunk = model.next_appends(rng.randint(KILL_EVERY // 2, KILL_EVERY * 3 // 2))
            for i in range(0, len(chunk), 50):
                for result in await log.append_batch(chunk[i : i + 50]):
                    assert not isinstance(result, Exception), result
            # Kill it while it works: once it has committed something new, after a random short while.
            before = await progress_marker(rm)
            deadline = time.monotonic() + 5
            while await progress_marker(rm) == before and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(rng.uniform(0, 0.08))
            proc.kill()
            kills += 1
            # Mostly the same worker id (it takes its leases back with a new epoch at once); sometimes a new
            # one, which must wait for the dead worker's leases to expire.
            last_id = "w0" if kills % 4 else f"w{kills}"
            epochs_before = {p: s.epoch for p, s in (await watcher.states()).items()}
            proc.start(last_id)
        # Let the last one take every partition (new epochs) and catch up, then stop it politely.
        deadline = time.monotonic() + 30
        while True:
            states = await watcher.states()
            if all(s.live and s.owner == last_id and s.epoch > epochs_before[p] for p, s in states.items()):
                break
            assert time.monotonic() < deadline, f"the last projector never took over: {states}"
            await asyncio.sleep(0.05)
        heads = await log.heads()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cps = await rm.checkpoints(PROJECTION)
            if all(cps.get(p) and cps[p].position == h for p, h in heads.items() if h):
                break
            await asyncio.sleep(0.1)
        code, err = proc.stop()
        assert code == 0, err[-2000:]
        assert "Traceback" not in err
        states = await watcher.states()
        assert not any(s.live for s in states.values()), "SIGTERM released every lease"
        # Restarts took the leases over with new epochs (one killed early may not have taken them all).
        assert max(s.epoch for s in states.values()) >= kills // 2
        assert kills >= model.events // (2 * KILL_EVERY)

        # Caught up exactly to the heads.
        cps = await rm.checkpoints(PROJECTION)
        assert {p: cps[p].position for p in cps if cps[p].position} == {p: h for p, h in heads.items() if h}
        # The model of the commands: every message once, in order, seq contiguous; versions contiguous.
        for sid, texts in model.messages.items():
            page = await rm.get_messages("default", sid)
            assert [m.content for m in page.messages] == texts, sid
            assert [m.seq for m in page.messages] == list(range(1, len(texts) + 1))
            session = await rm.get_session("default", sid)
            assert session is not None and session.version == model.versions[sid]
            assert session.message_count == len(texts) and session.user_id == model.owner[sid]
        for (user, key), value in model.memory.items():
            got = await rm.get_memory("default", user, key=key)
            assert got[key].value == value
        assert (await rm.dead_letters()) == []

        # A fresh rebuild (the whole log into an empty in-memory read model) equals it, row for row.
        fresh = InMemoryReadModel()
        stats = await Projector(log, fresh, worker_id="rebuild").run_until_caught_up(timeout_s=120)
        assert stats.applied == model.events
        for sid in model.messages:
            assert await rm.get_session("default", sid) == await fresh.get_session("default", sid)
            assert await rm.get_messages("default", sid) == await fresh.get_messages("default", sid)
        for user in {u for u, _ in model.memory}:
            assert await rm.get_memory("default", user) == await fresh.get_memory("default", user)
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()
        await rm.close()
