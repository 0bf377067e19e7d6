"""docker-compose.yml, the settings and the CLI: what a deployment relies on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from events.errors import ConfigurationError
from service.cli import build_parser
from service.settings import ServiceSettings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_the_compose_file_is_valid_where_docker_compose_exists() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        # No compose tool on this machine: the YAML checks below still run (never a silent skip).
        print("docker-compose not installed (apt-get install docker-compose); checked the YAML only")
        return
    done = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_the_compose_file_runs_the_whole_stack_durably() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"redis", "postgres", "api", "projector-1", "projector-2"} <= set(services)
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    assert "--appendfsync everysec" in redis_cmd or "--appendfsync always" in redis_cmd
    for name in ("projector-1", "projector-2"):
        assert services[name]["command"][:2] == ["sessions", "project"]
    assert services["api"]["command"][:2] == ["sessions", "serve"]
    for name, service in services.items():
        if name != "migrate":
            assert "healthcheck" in service, name
    env = services["api"]["environment"]
    assert env["SESSION_STORAGE"] == "postgres" and env["REDIS_URL"].startswith("redis://")
    assert env["DB_CONNECTION_STRING"].startswith("postgresql://")
    assert {"redis-data", "postgres-data"} <= set(spec["volumes"])


def test_settings_default_to_the_embedded_service() -> None:
    s = ServiceSettings.from_env({})
    assert s.embedded and s.storage == "memory" and s.redis_url is None
    assert (s.http_host, s.http_port, s.grpc_port, s.read_timeout_s, s.projector) == (
        "127.0.0.1",
        8052,
        50052,
        2.0,
        True,
    )


def test_settings_read_the_environment() -> None:
    s = ServiceSettings.from_env(
        {
            "SESSION_STORAGE": "postgres",
            "DB_CONNECTION_STRING": "postgresql://x@127.0.0.1/db",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "SESSIONS_HTTP_PORT": "9000",
            "SESSIONS_PORT": "9001",
            "SESSIONS_READ_TIMEOUT_S": "0.5",
            "SESSIONS_PROJECTOR": "0",
            "SESSIONS_PARTITIONS": "4",
        }
    )
    assert not s.embedded and s.storage == "postgres" and s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.read_model.dsn == "postgresql://x@127.0.0.1/db" and s.read_model.schema == "public"
    assert (s.http_port, s.grpc_port, s.read_timeout_s, s.projector, s.log.partitions) == (
        9000,
        9001,
        0.5,
        False,
        4,
    )


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"SESSION_STORAGE": "postgres"}, "missing_db_connection_string"),
        ({"SESSION_STORAGE": "mongo"}, "invalid_storage"),
        ({"SESSIONS_HTTP_PORT": "eighty"}, "invalid_setting"),
        ({"SESSIONS_READ_TIMEOUT_S": "0"}, "invalid_setting"),
    ],
)
def test_bad_settings_are_refused_with_a_code(env: dict[str, str], code: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        ServiceSettings.from_env(env)
    assert e.value.code == code


def test_the_cli_has_serve_and_the_projector_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--port", "9999", "--no-projector"])
    assert args.port == 9999 and args.no_projector and callable(args.handler)
    args = parser.parse_args(["project", "--burst"])  # from consumers.cli
    assert args.burst and callable(args.handler)


def test_the_api_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """A very short ``python -m bench api`` (figures are not checked: speed lives in bench/)."""
    from bench import api

    api.main(["--duration", "0.3", "--clients", "1,2", "--storage", "memory", "--no-raw"])
    out = capsys.readouterr().out
    assert out.count("req/s") == 4 and "clients=2" in out


def test_the_api_benchmark_measures_the_raw_limit_in_the_same_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``bench api`` also drives the bare ASGI app (``bench._raw``) with the same client, and prints
    ours / raw for each operation and level (figures are not checked)."""
    from bench import api

    api.main(["--duration", "0.3", "--clients", "1,2", "--storage", "memory"])
    out = capsys.readouterr().out
    table = out.split("ours / raw limit", 1)[1].splitlines()[2:]
    assert len([line for line in table if " ms (" in line]) == 4, out
