"""``sessions forget-user`` against the real Redis and PostgreSQL, while an API process (here: the test's
application, with its projector) serves and projects."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.cli import main
from tests.fix_pg import PG_DSN
from tests.fix_redis import REDIS_URL
from tests.fix_service import close_application, make_application

from .erasure_helpers import CANARY, dump_read_model, rows_of, write_user


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


async def test_forget_user_command(
    key_prefix: str,
    pg_schema: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service.http.app import create_app

    app, log = await make_application("real", key_prefix, request)
    try:
        transport = httpx.ASGITransport(app=create_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await write_user(http, "dave", ["s-dave"])
        for name, value in {
            "REDIS_URL": REDIS_URL,
            "SESSION_STORAGE": "postgres",
            "DB_CONNECTION_STRING": PG_DSN,
            "SESSIONS_DB_SCHEMA": pg_schema,
            "SESSIONS_REDIS_PREFIX": key_prefix,
            "SESSIONS_PARTITIONS": str(log.partitions),
        }.items():
            monkeypatch.setenv(name, value)
        # The command runs its own event loop (as it does from a shell): in a thread, beside this one.
        assert await asyncio.to_thread(_run, ["forget-user", "--tenant", "default", "dave"]) == 0
        out = capsys.readouterr().out
        assert "1 sessions deleted, data key destroyed: yes" in out and "BGREWRITEAOF" in out
        assert CANARY not in await dump_read_model(app, pg_schema)
        assert await rows_of(app, pg_schema, "dave") == {"sessions": 0, "memories": 0}
        assert await asyncio.to_thread(_run, ["forget-user", "dave"]) == 0  # again: harmless
        out = capsys.readouterr().out
        assert "0 sessions deleted, data key destroyed: no" in out
        assert (
            "nothing to erase: tenant 'default' has no session, no memory and no data key of user 'dave'"
            in out
        )
        # A user never seen: said so, exit 0 (running an erasure again must stay safe in scripts).
        assert await asyncio.to_thread(_run, ["forget-user", "nobody-ever"]) == 0
        assert "nothing to erase" in capsys.readouterr().out
        # Someone with data is not "nothing to erase".
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await write_user(http, "erin", ["s-erin"])
        assert await asyncio.to_thread(_run, ["forget-user", "erin"]) == 0
        out = capsys.readouterr().out
        assert "nothing to erase" not in out and "1 sessions deleted, data key destroyed: yes" in out
    finally:
        await close_application(app, log, "real")


def test_forget_user_refuses_the_embedded_service(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("REDIS_URL", "SESSION_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    assert _run(["forget-user", "erin"]) == 2
    assert "embedded" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["forget-user", "a/b"], "invalid_id"),
        (["forget-user", "bad\x00id"], "invalid_id"),
        (["forget-user", "x" * 257], "invalid_id"),
        (["forget-user", "--tenant", "Not A Tenant", "alice"], "invalid_tenant"),
    ],
)
def test_forget_user_refuses_an_id_the_api_refuses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], code: str
) -> None:
    """The same check as the API (service.validation), before anything is opened: exit 2, one line."""
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("SESSION_STORAGE", "postgres")
    monkeypatch.setenv("DB_CONNECTION_STRING", PG_DSN)
    monkeypatch.setenv("SESSIONS_REDIS_PREFIX", "never-used-by-a-refused-forget")
    assert _run(argv) == 2
    captured = capsys.readouterr()
    assert (
        captured.out == ""
        and captured.err.startswith(f"sessions: {code}: ")
        and captured.err.count("\n") == 1
    )
