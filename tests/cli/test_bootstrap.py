"""The one ``sessions`` command line: every command reads its settings, fails and exits the same way
(``service/cli/__init__.py`` has the table). In-process through ``service.cli.run``, and as processes for
``serve``, whose failures used to be tracebacks."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from events.errors import ConfigurationError
from events.settings import LogSettings
from projections.settings import ReadModelSettings
from service.cli import run
from service.grpc.servicer import grpc_host
from service.settings import LOG_FORMAT, ServiceSettings
from tests.fix_pg import PG_DSN, check_pg
from tests.fix_redis import REDIS_URL

ERROR_LINE = re.compile(r"^sessions: [a-z_]+: \S.*\n$")

# One invocation of every command (with what it needs to get past argparse).
COMMANDS = [
    ["serve"],
    ["keys", "--file", "/nonexistent/keys.json", "list"],
    ["forget-user", "alice"],
    ["project", "--burst"],
    ["project", "--check"],
    ["status"],
    ["dead-letters", "list"],
    ["trim", "--keep", "0"],
    ["rebuild"],
    ["migrate"],
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("SESSIONS_", "SESSION_")) or name in ("REDIS_URL", "DB_CONNECTION_STRING"):
            monkeypatch.delenv(name)
    yield


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = run(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _env(**changes: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SESSIONS_", "SESSION_")) and k not in ("REDIS_URL", "DB_CONNECTION_STRING")
    }
    env.update(changes)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sessions(*argv: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stderr, time.monotonic() - started


# -- settings: every environment variable is read by a settings dataclass, checked before anything opens ---
def test_the_grpc_host_is_a_setting() -> None:
    s = ServiceSettings.from_env({"SESSIONS_HTTP_HOST": "127.0.0.2", "SESSIONS_GRPC_HOST": "::1"})
    assert (s.grpc_host, grpc_host(s)) == ("::1", "::1")
    assert grpc_host(ServiceSettings.from_env({"SESSIONS_HTTP_HOST": "127.0.0.2"})) == "127.0.0.2"


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"REDIS_URL": "nope://127.0.0.1"}, "invalid_redis_url"),
        ({"REDIS_URL": "redis://127.0.0.1:port/0"}, "invalid_redis_url"),
        ({"SESSIONS_PARTITIONS": "0"}, "invalid_setting"),
        ({"SESSIONS_MAX_MESSAGES": "many"}, "invalid_setting"),
        (
            {"SESSION_STORAGE": "postgres", "DB_CONNECTION_STRING": "not a dsn"},
            "invalid_db_connection_string",
        ),
        ({"SESSIONS_HTTP_PORT": "70000"}, "invalid_setting"),
        ({"SESSIONS_PORT": "-1"}, "invalid_setting"),
        ({"SESSIONS_LOG_LEVEL": "loud"}, "invalid_setting"),
    ],
)
def test_a_setting_that_cannot_be_used_is_refused_with_a_code(env: dict[str, str], code: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        ServiceSettings.from_env(env)
    assert e.value.code == code


def test_the_log_and_read_model_settings_refuse_on_their_own() -> None:
    with pytest.raises(ConfigurationError) as e:
        LogSettings.from_env({"REDIS_URL": "http://127.0.0.1:6379"})
    assert e.value.code == "invalid_redis_url" and "http" not in e.value.message.split(":")[0]
    with pytest.raises(ConfigurationError) as e:
        ReadModelSettings.from_env({"SESSION_STORAGE": "postgres", "DB_CONNECTION_STRING": "user=x pass"})
    assert e.value.code == "invalid_db_connection_string"


def test_a_password_in_a_bad_url_is_not_repeated(clean_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["REDIS_URL"] = "redis://:s3cret@127.0.0.1:port/0"
    try:
        code, _, err = _run(capsys, ["status"])
    finally:
        del os.environ["REDIS_URL"]
    assert code == 2 and "invalid_redis_url" in err and "s3cret" not in err


# -- one error format and one exit-code table for every command --------------------------------------------
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_bad_redis_url_is_one_line_and_exit_2_from_every_command(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "nope://127.0.0.1:6379/0")
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == ""
    assert ERROR_LINE.match(err) and err.startswith("sessions: invalid_redis_url: REDIS_URL is not usable"), (
        err
    )


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["nope"], "invalid choice: 'nope'"),
        (["serve", "--port", "abc"], "argument --port: not a port number"),
        (["serve", "--port", "70000"], "a port is 1 to 65535, not 70000"),
        (["trim", "--keep", "-1"], "argument --keep: must be at least 0"),
        (["dead-letters", "retry", "x"], "not a number"),
        (["keys", "--file", "k.json"], "required: ACTION"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    clean_env: None, capsys: pytest.CaptureFixture[str], argv: list[str], text: str
) -> None:
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == "" and ERROR_LINE.match(err), err
    assert err.startswith("sessions: usage_error: ") and text in err


def test_no_command_prints_the_help_and_exits_2(clean_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, [])
    assert code == 2 and out == "" and "COMMAND" in err and "forget-user" in err and "rebuild" in err


def test_an_unexpected_error_is_one_line_and_exit_1(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.security import keys

    def broken(*_: Any) -> Any:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(keys, "load_keys_file", broken)
    code, _out, err = _run(capsys, ["keys", "--file", "k.json", "list"])
    assert code == 1 and ERROR_LINE.match(err), err
    assert err == "sessions: internal_error: unexpected RuntimeError: disk on fire second line\n"


# -- a bad DB_CONNECTION_STRING fails fast, with the driver's reason ----------------------------------------
@pytest.mark.parametrize(
    ("dsn", "code", "reason"),
    [
        (PG_DSN.replace("postgres@", "no_such_role@"), 1, 'role "no_such_role" does not exist'),
        ("postgresql://postgres@127.0.0.1:1/test", 1, "Connection refused"),
        ("postgresql://postgres@127.0.0.1:port/test", 1, 'invalid integer value "port"'),
        ("not a dsn", 2, 'missing "=" after "not"'),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["migrate"]])
def test_a_bad_db_connection_string_fails_fast_with_the_drivers_reason(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key_prefix: str,
    dsn: str,
    code: int,
    reason: str,
    command: list[str],
) -> None:
    check_pg()
    assert "postgres@" in PG_DSN
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("SESSIONS_REDIS_PREFIX", key_prefix)
    monkeypatch.setenv("SESSION_STORAGE", "postgres")
    monkeypatch.setenv("DB_CONNECTION_STRING", dsn)
    started = time.monotonic()
    got, _, err = _run(capsys, command)
    elapsed = time.monotonic() - started
    assert (got, elapsed < 5) == (code, True), (elapsed, err)
    assert ERROR_LINE.match(err) and reason in err, err


# -- serve, as a process ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "env", "code", "text"),
    [
        (["serve"], {"REDIS_URL": "nope://x"}, 2, "sessions: invalid_redis_url: "),
        (["serve"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, 1, "sessions: unavailable: cannot reach Redis"),
        (["serve", "--port", "99999"], {}, 2, "sessions: usage_error: argument --port"),
        (["serve"], {"SESSIONS_HTTP_PORT": "http"}, 2, "sessions: invalid_setting: "),
    ],
)
def test_serve_fails_with_one_error_line(argv: list[str], env: dict[str, str], code: int, text: str) -> None:
    # Free ports of its own for both servers (env may name another): never the default 8052 a developer's
    # own `sessions serve` may hold.
    ports = {"SESSIONS_PORT": str(_free_port()), "SESSIONS_HTTP_PORT": str(_free_port())}
    got, err, _ = _sessions(*argv, env=_env(**{**ports, **env}))
    assert got == code and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("sessions: ")]
    assert len(errors) == 1 and errors[0].startswith(text), err


def test_serve_on_a_taken_http_port_fails_before_opening_anything() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got, err, _ = _sessions("serve", "--port", str(port), env=_env(SESSIONS_PORT=str(_free_port())))
    assert got == 2 and "Traceback" not in err, err
    assert (
        f"sessions: http_address_unavailable: HTTP cannot listen on 127.0.0.1:{port}: Address already in use"
        in err
    )
    assert "embedded" not in err  # refused before the application opened


def test_serve_logs_every_line_in_the_one_format(tmp_path: Any) -> None:
    http_port = _free_port()
    env = _env(SESSIONS_HTTP_PORT=str(http_port), SESSIONS_PORT=str(_free_port()))
    with (tmp_path / "serve.err").open("wb") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from service.cli import main; main()", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errf,
        )
    try:
        deadline = time.monotonic() + 60
        while "Application startup complete" not in (tmp_path / "serve.err").read_text():
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "serve.err").read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    lines = (tmp_path / "serve.err").read_text().splitlines()
    # LOG_FORMAT: "<date> <time>,<ms> <LEVEL> <logger>: <message>", for ours, uvicorn's and Litestar's alike.
    assert LOG_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"
    line_re = re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: "
    )
    assert lines and all(line_re.match(line) for line in lines), lines
    assert any(" uvicorn.error: " in line for line in lines)
    assert any(f"HTTP API on 127.0.0.1:{http_port}" in line for line in lines)


def test_only_the_settings_modules_read_the_environment() -> None:
    """Every variable is read by a settings dataclass's ``from_env()`` (named once, checked once). The clients
    (the SDK, the ``genai_platform`` facade) read their own defaults: they must not import the server's
    settings."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    settings = {"events/settings.py", "projections/settings.py", "service/settings.py"}
    clients = {"service/sdk.py"}
    readers = re.compile(r"os\.environ|getenv\(")
    found = sorted(
        str(path.relative_to(root))
        for package in ("events", "projections", "consumers", "service")
        for path in (root / package).rglob("*.py")
        if readers.search(path.read_text())
    )
    assert set(found) <= settings | clients, found


def test_the_mode_line_never_shows_a_redis_password() -> None:
    """``serve`` logs where its log lives (``Application.mode``): the URL without its password."""
    from events.settings import redacted

    assert redacted("redis://:s3cret@10.0.0.5:6380/2") == "redis://:***@10.0.0.5:6380/2"
    assert redacted("rediss://app:s3cret@cache.example:6379/0") == "rediss://app:***@cache.example:6379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"

    import fakeredis

    from events.log import EventLog
    from events.settings import LogSettings
    from projections.memory import InMemoryReadModel
    from service.app import Application
    from service.settings import ServiceSettings

    settings = ServiceSettings(log=LogSettings(redis_url="redis://:s3cret@10.0.0.5:6380/2"))
    app = Application(
        EventLog(fakeredis.FakeAsyncRedis(), settings.log), InMemoryReadModel(), settings=settings
    )
    assert "s3cret" not in app.mode and "redis://:***@10.0.0.5:6380/2" in app.mode
