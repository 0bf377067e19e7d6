"""The projector commands end to end on the real Redis and PostgreSQL, configured by the environment only:
migrate, project --burst / --check, status, dead-letters list and retry (after a fix), trim, rebuild, and
one-line errors. The commands run in-process through ``service.cli.run`` (so a test can ship "the fix"),
except the long-running worker, which runs as a process and is stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from events import EventLog, LogSettings
from events.codec import UPCASTERS
from service.cli import run as main
from tests.events.factories import added, created, msg
from tests.fix_pg import PG_DSN, check_pg
from tests.fix_redis import REDIS_URL, delete_prefix

from .pg import open_pg_read_model, projector_env

PARTITIONS = 4
NOTE_TYPE = "session.note_added.v0"  # a type this code base does not know (yet)


def note(obj: dict[str, Any]) -> dict[str, Any]:
    """The fix: an upcaster turning the old note into a user message."""
    text = obj["payload"]["text"]
    return {
        **obj,
        "type": "session.messages_added.v1",
        "payload": {"messages": [{"role": "user", "content": text}]},
    }


async def _setup(prefix: str) -> int:
    client = aioredis.Redis.from_url(REDIS_URL)
    log = EventLog(client, LogSettings(prefix=prefix, partitions=PARTITIONS))
    await log.setup()
    n = 0
    for i in range(6):
        await log.append([created(f"s{i}", "u1")])
        await log.append([added(f"s{i}", msg("user", f"hello {i}"), msg("assistant", f"hi {i}"))])
        n += 2
    # An entry of an unknown type for s0, as an old publisher wrote it: version 3, after its two events.
    state = await log.aggregate("default", "session", "s0")
    event = {
        "type": NOTE_TYPE,
        "id": "0190a000-0000-7000-8000-000000000001",
        "aggregate_kind": "session",
        "aggregate_id": "s0",
        "occurred_at": "2026-01-01T00:00:00Z",
        "payload": {"text": "a note"},
    }
    await client.xadd(
        log.keys.log(state.partition),
        {"type": NOTE_TYPE, "version": str(state.version + 1), "event": json.dumps(event).encode()},
    )
    await client.aclose()
    return n + 1


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, pg_schema: str, key_prefix: str) -> Iterator[dict[str, str]]:
    check_pg()
    env = projector_env(pg_schema, key_prefix, PARTITIONS)
    for k in list(env):
        monkeypatch.setenv(k, env[k])
    yield env

    async def cleanup() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        await delete_prefix(client, key_prefix)
        await client.aclose()

    asyncio.run(cleanup())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def messages_of(schema: str, sid: str) -> list[str | None]:
    async def get() -> list[str | None]:
        rm = await open_pg_read_model(schema)
        try:
            return [m.content for m in (await rm.get_messages("default", sid)).messages]
        finally:
            await rm.close()

    return asyncio.run(get())


def test_commands_from_migrate_to_rebuild(
    cli_env: dict[str, str],
    pg_schema: str,
    key_prefix: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = asyncio.run(_setup(key_prefix))
    code, out, _ = run(capsys, "migrate")
    assert code == 0 and "migrations applied" in out

    code, out, err = run(capsys, "project", "--burst", "--lease-ttl-ms", "1000")
    assert code == 0, err
    assert f"caught up: {n - 1} events" in out and "1 dead-lettered" in out

    code, out, _ = run(capsys, "status")
    assert code == 0 and "lag: 0 events" in out and "dead letters: 1" in out
    code, out, _ = run(capsys, "status", "--json")
    doc = json.loads(out)
    assert len(doc["partitions"]) == PARTITIONS and doc["dead_letters"] == 1
    assert all(p["lag_events"] == 0 and p["checkpoint"] == p["head"] for p in doc["partitions"])

    code, out, _ = run(capsys, "dead-letters", "list")
    assert code == 0 and NOTE_TYPE in out
    letter_id = out.split()[0]

    # Without the fix, a retry leaves it where it is (and says so with exit code 1).
    code, out, err = run(capsys, "dead-letters", "retry", letter_id)
    assert code == 1 and "still failing" in out
    code, out, err = run(capsys, "dead-letters", "retry", "999999")
    assert code == 2 and "no pending dead letter with id 999999" in err and err.count("\n") == 1
    # With the fix shipped, the retry applies it at its place in the log.
    monkeypatch.setitem(UPCASTERS, NOTE_TYPE, note)
    code, out, _ = run(capsys, "dead-letters", "list")
    code, out, err = run(capsys, "dead-letters", "retry")
    assert code == 0 and "applied" in out, out + err
    assert messages_of(pg_schema, "s0") == ["hello 0", "hi 0", "a note"]
    code, out, err = run(capsys, "dead-letters", "list")
    assert code == 0 and "0 dead letter(s)" in err

    code, out, err = run(capsys, "trim", "--keep", "1")
    assert code == 0 and f"trimmed {n - PARTITIONS} entries" in out and "partition 0" in err
    code, out, err = run(capsys, "trim", "--keep", "0")
    assert code == 0 and f"trimmed {PARTITIONS} entries" in out
    # The log is empty now; the read models keep everything, and a rebuild from the archive reproduces it.
    code, out, err = run(capsys, "rebuild")
    assert code == 0 and out.startswith(f"rebuilt: {n} events") and "rebuild:" in err
    assert messages_of(pg_schema, "s0") == ["hello 0", "hi 0", "a note"]
    code, out, err = run(capsys, "rebuild", "--resume")
    assert code == 0


def test_a_worker_process_is_healthy_while_it_runs_and_exits_0_on_sigterm(
    cli_env: dict[str, str], key_prefix: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    asyncio.run(_setup(key_prefix))
    code, out, _ = run(capsys, "project", "--check")
    assert code == 1 and out.startswith("unhealthy")
    with (tmp_path / "worker.log").open("wb") as errf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consumers",
                "project",
                "--worker-id",
                "cli-worker",
                "--lease-ttl-ms",
                "1000",
            ],
            env=cli_env,
            stdout=subprocess.DEVNULL,
            stderr=errf,
        )
    try:
        deadline = time.monotonic() + 30
        while run(capsys, "project", "--check", "--worker-id", "cli-worker")[0] != 0:
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        code, out, _ = run(capsys, "status")
        assert "cli-worker" in out
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (tmp_path / "worker.log").read_text()
    assert run(capsys, "project", "--check")[0] == 1


@pytest.mark.parametrize(
    ("env", "code", "text"),
    [
        ({"SESSIONS_PARTITIONS": "many"}, 2, "invalid_setting"),
        ({"SESSION_STORAGE": "postgres", "DB_CONNECTION_STRING": ""}, 2, "missing_db_connection_string"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, 1, "cannot reach Redis"),
        ({"SESSIONS_PARTITIONS": "8"}, 2, "partition_count_mismatch"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key_prefix: str,
    env: dict[str, str],
    code: int,
    text: str,
) -> None:
    asyncio.run(_setup(key_prefix))  # a log of 4 partitions
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    got, _out, err = run(capsys, "status")
    assert got == code and text in err and err.count("\n") == 1 and err.startswith("sessions: ")


def test_ctrl_c_cancels_a_rebuild_and_resume_continues_it(
    cli_env: dict[str, str],
    pg_schema: str,
    key_prefix: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    async def setup() -> int:
        client = aioredis.Redis.from_url(REDIS_URL)
        log = EventLog(client, LogSettings(prefix=key_prefix, partitions=PARTITIONS))
        await log.setup()
        for i in range(0, 1500, 100):
            await log.append_batch([[created(f"r{j}", "u1")] for j in range(i, i + 100)])
        await client.aclose()
        return 1500

    n = asyncio.run(setup())
    assert run(capsys, "project", "--burst")[0] == 0
    with (tmp_path / "rebuild.log").open("wb") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "consumers", "rebuild", "--batch-size", "5"],
            env=cli_env,
            stdout=subprocess.DEVNULL,
            stderr=errf,
        )
    shadow = f"{pg_schema}__rebuild"
    try:
        deadline = time.monotonic() + 60
        while not _shadow_has_progress(shadow):
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "rebuild.log").read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "rebuild.log").read_text()
    assert "--resume" in err and "Traceback" not in err
    code, out, _ = run(capsys, "rebuild", "--resume")
    done = int(out.split()[1])
    assert code == 0 and 0 < done < n

    async def sessions_of_u1() -> int:
        rm = await open_pg_read_model(pg_schema)
        try:
            page = await rm.list_sessions("default", "u1", limit=n + 10)
            return len(page.sessions)
        finally:
            await rm.close()

    assert asyncio.run(sessions_of_u1()) == n


def _shadow_has_progress(schema: str) -> bool:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
        if not found:
            return False
        try:
            row = conn.execute(
                f'SELECT count(*) FROM "{schema}".checkpoints WHERE pos_ms IS NOT NULL'
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
        return bool(row and row[0])


def test_trim_every_runs_rounds_until_sigterm(
    cli_env: dict[str, str], key_prefix: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    n = asyncio.run(_setup(key_prefix))
    assert run(capsys, "project", "--burst")[0] == 0
    out_file = tmp_path / "trim.out"
    with out_file.open("wb") as out, (tmp_path / "trim.err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "consumers", "trim", "--keep", "0", "--every", "0.1"],
            env=cli_env,
            stdout=out,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while out_file.read_text().count("trimmed") < 3:
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "trim.err").read_text()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    rounds = out_file.read_text().splitlines()
    assert rounds[0] == f"trimmed {n} entries from {PARTITIONS} partitions"
    assert rounds[1] == f"trimmed 0 entries from {PARTITIONS} partitions"


def test_trim_needs_an_explicit_retention(
    cli_env: dict[str, str], key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no flags, ``trim`` used to remove every projected entry of every stream: now it refuses, and
    removes nothing, until the operator names a retention."""
    n = asyncio.run(_setup(key_prefix))
    assert run(capsys, "project", "--burst")[0] == 0

    async def lengths() -> int:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = LogSettings(prefix=key_prefix, partitions=PARTITIONS)
            log = EventLog(client, keys)
            return sum([int(await client.xlen(log.keys.log(p))) for p in range(PARTITIONS)])
        finally:
            await client.aclose()

    assert asyncio.run(lengths()) == n
    for argv in (["trim"], ["trim", "--every", "1"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith("sessions: retention_required: trim needs an explicit retention: --keep N")
        assert asyncio.run(lengths()) == n
    code, out, _ = run(capsys, "trim", "--keep-seconds", "3600")
    assert code == 0 and "trimmed 0 entries" in out and asyncio.run(lengths()) == n
    code, out, _ = run(capsys, "trim", "--keep", "0")
    assert code == 0 and f"trimmed {n} entries" in out and asyncio.run(lengths()) == 0


def test_check_is_about_this_worker_not_any_worker(
    cli_env: dict[str, str], key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from consumers.leases import LeaseManager
    from consumers.projector import default_worker_id

    async def announce(worker: str) -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        log = EventLog(client, LogSettings(prefix=key_prefix, partitions=PARTITIONS))
        await LeaseManager(
            client, log.keys, PARTITIONS, projection="read_models", worker_id=worker, ttl_ms=30_000
        ).heartbeat()
        await client.aclose()

    asyncio.run(_setup(key_prefix))
    # A worker on another machine is live; the one this check runs beside is not.
    asyncio.run(announce("other-host-1234-abcd"))
    code, out, _ = run(capsys, "project", "--check")
    assert code == 1 and out.startswith("unhealthy") and "other-host-1234-abcd" in out
    code, out, _ = run(capsys, "project", "--check", "--worker-id", "projector-1")
    assert code == 1 and out.startswith("unhealthy: projector-1 is not live")
    assert run(capsys, "project", "--check", "--worker-id", "other-host-1234-abcd")[0] == 0
    # A worker of this host, with its default id, is live: healthy.
    asyncio.run(announce(default_worker_id()))
    code, out, _ = run(capsys, "project", "--check")
    assert code == 0 and out.startswith("ok"), out


def test_a_burst_that_cannot_catch_up_fails_naming_the_partitions(
    cli_env: dict[str, str], key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from consumers.leases import LeaseManager

    async def held_by_a_dead_worker() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        log = EventLog(client, LogSettings(prefix=key_prefix, partitions=PARTITIONS))
        dead = LeaseManager(
            client, log.keys, PARTITIONS, projection="read_models", worker_id="dead", ttl_ms=30_000
        )
        await dead.heartbeat()
        for p in (0, 1):  # its share of 4 partitions between two live workers
            assert await dead.acquire(p) is not None
        await client.aclose()

    asyncio.run(_setup(key_prefix))
    asyncio.run(held_by_a_dead_worker())
    code, out, err = run(capsys, "project", "--burst", "--timeout", "1", "--lease-ttl-ms", "1000")
    assert code == 1 and out == "", out
    assert err.startswith("sessions: not_caught_up: ") and err.count("\n") == 1, err
    assert re.search(r"partitions [01](, 1)? are behind their heads", err), err
