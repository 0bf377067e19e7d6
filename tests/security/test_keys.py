"""API keys: the format, what is stored, the keys file and the environment, reloading, the CLI, the bind
rule of an open service, and the clients sending their key."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from genai_platform import GenAIPlatform
from service.cli import main
from service.errors import ConfigurationError, PermissionDenied, Unauthenticated
from service.grpc.servicer import create_grpc_server
from service.sdk import AsyncSessionsClient
from service.security.bind import check_bind
from service.security.gate import Gate
from service.security.keys import (
    ApiKey,
    KeyStore,
    create_key,
    hash_secret,
    load_keys_file,
    parse_keys_env,
    revoke_key,
)
from service.settings import ServiceSettings
from tests.security.conftest import Stack


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def code(exc: pytest.ExceptionInfo[Exception]) -> str:
    return str(getattr(exc.value, "code", ""))


def test_only_a_hash_is_stored_and_the_key_authenticates(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, full = create_key(path, "acme", "writer", "ci")
    assert full.startswith(f"sk_{key.id}_")
    secret = full[len(f"sk_{key.id}_") :]
    text = path.read_text()
    assert secret not in text and full not in text
    assert hash_secret(secret) in text
    assert path.stat().st_mode & 0o777 == 0o600
    principal = KeyStore(path).authenticate(f"Bearer {full}")
    assert (principal.key_id, principal.tenant, principal.role) == (key.id, "acme", "writer")
    assert KeyStore(path).authenticate(f"bearer   {full}").tenant == "acme"  # scheme is case-insensitive


def test_refusals_say_missing_invalid_or_revoked(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, full = create_key(path, "acme", "reader")
    store = KeyStore(path, reload_interval_s=0)
    for header, expected in (
        (None, "missing_api_key"),
        ("  ", "missing_api_key"),
        (full, "invalid_api_key"),
        (f"Token {full}", "invalid_api_key"),
        (f"Bearer {full}x" + "!", "invalid_api_key"),
        (f"Bearer {full[:-1]}{'A' if full[-1] != 'A' else 'B'}", "invalid_api_key"),
        (f"Bearer sk_{'f' * 12}_{full.split('_', 2)[2]}", "invalid_api_key"),
    ):
        with pytest.raises(Unauthenticated) as e:
            store.authenticate(header)
        assert code(e) == expected, header
    revoke_key(path, key.id)
    with pytest.raises(Unauthenticated) as e:
        store.authenticate(f"Bearer {full}")
    assert code(e) == "revoked_api_key"
    # a revoked key with a wrong secret does not even learn that it was revoked
    with pytest.raises(Unauthenticated) as e:
        store.authenticate(f"Bearer {full[:-1]}{'A' if full[-1] != 'A' else 'B'}")
    assert code(e) == "invalid_api_key"


def test_the_file_is_reread_when_it_changes_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, full = create_key(path, "acme", "admin")
    clock = Clock()
    store = KeyStore(path, reload_interval_s=1.0, clock=clock)
    assert store.authenticate(f"Bearer {full}").role == "admin"
    clock.now = 1.5
    store.authenticate(f"Bearer {full}")  # checked (unchanged) at 1.5
    revoke_key(path, key.id)
    clock.now = 2.0  # within the interval of the last check: the old keys still hold
    assert store.authenticate(f"Bearer {full}").role == "admin"
    clock.now = 2.6
    with pytest.raises(Unauthenticated) as e:
        store.authenticate(f"Bearer {full}")
    assert code(e) == "revoked_api_key"
    # a new key is picked up the same way
    _, second = create_key(path, "acme", "reader")
    clock.now = 4.0
    assert store.authenticate(f"Bearer {second}").role == "reader"


def test_a_broken_file_keeps_the_keys_last_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys.json"
    _, full = create_key(path, "acme", "writer")
    store = KeyStore(path, reload_interval_s=0)
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="service.security"):
        assert store.authenticate(f"Bearer {full}").tenant == "acme"
    assert "keeping the API keys last read" in caplog.text
    with pytest.raises(ConfigurationError):
        KeyStore(path)  # but a server does not start on it


def test_keys_from_the_environment(tmp_path: Path) -> None:
    _, full = create_key(tmp_path / "k.json", "acme", "writer")
    entry = load_keys_file(tmp_path / "k.json")[0]
    compact = f"{entry.id}:acme:writer:{entry.hash}"
    as_json = json.dumps([{"id": entry.id, "tenant": "acme", "role": "writer", "hash": entry.hash}])
    for text in (compact, f" {compact} ,", as_json):
        keys = parse_keys_env(text)
        assert [(k.id, k.tenant, k.role) for k in keys] == [(entry.id, "acme", "writer")]
        store = KeyStore(None, keys)
        assert store.configured and store.authenticate(f"Bearer {full}").role == "writer"
    for bad in (
        "x:y",
        "[1]",
        "{",
        f"{entry.id}:acme:root:{entry.hash}",
        f"{entry.id}:Acme Corp:writer:{entry.hash}",
    ):
        with pytest.raises(ConfigurationError):
            parse_keys_env(bad)
    settings = ServiceSettings.from_env({"SESSIONS_API_KEYS": compact})
    assert not Gate.from_settings(settings).open
    assert Gate.from_settings(ServiceSettings.from_env({})).open


def test_a_named_but_missing_keys_file_fails_closed(tmp_path: Path) -> None:
    gate = Gate(KeyStore(tmp_path / "absent.json"))
    assert not gate.open
    with pytest.raises(Unauthenticated):
        gate.admit(None, None, "127.0.0.1")


def test_an_open_gate_admits_an_admin_of_the_tenant_asked_for() -> None:
    gate = Gate(KeyStore(None), default_tenant="home")
    assert gate.admit(None, None, None).tenant == "home"
    assert gate.admit(None, "t2", None).tenant == "t2"
    assert gate.admit(None, None, None).role == "admin"


def test_a_key_cannot_ask_for_another_tenant(tmp_path: Path) -> None:
    _, full = create_key(tmp_path / "k.json", "acme", "admin")
    gate = Gate(KeyStore(tmp_path / "k.json"))
    assert gate.admit(f"Bearer {full}", "acme", None).tenant == "acme"
    with pytest.raises(PermissionDenied) as e:
        gate.admit(f"Bearer {full}", "other", None)
    assert code(e) == "tenant_mismatch"


def test_create_refuses_bad_tenants_and_roles(tmp_path: Path) -> None:
    for tenant, role in (("Acme", "reader"), ("a:b", "reader"), ("", "reader"), ("acme", "root")):
        with pytest.raises(Exception) as e:
            create_key(tmp_path / "k.json", tenant, role)
        assert code(e) in ("invalid_tenant", "invalid_role")
    assert not (tmp_path / "k.json").exists()
    with pytest.raises(Exception) as e:
        revoke_key(tmp_path / "k.json", "0" * 12)
    assert code(e) == "key_not_found"


def test_the_cli_creates_lists_and_revokes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "keys.json")

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_:
            main(["keys", "--file", path, *argv])
        out, err = capsys.readouterr()
        return int(exit_.value.code or 0), out, err

    rc, out, _ = run("create", "--tenant", "acme", "--role", "reader", "--name", "dash")
    full = out.strip()
    assert rc == 0 and full.startswith("sk_")
    key_id = full.split("_")[1]
    rc, listing, _ = run("list")
    assert rc == 0 and key_id in listing and "acme" in listing and "dash" in listing and "active" in listing
    stored = ApiKey.from_dict(json.loads(Path(path).read_text())["keys"][0])
    assert full.split("_", 2)[2] not in listing and stored.hash not in listing
    rc, out, _ = run("revoke", key_id)
    assert rc == 0 and key_id in out
    assert "revoked" in run("list")[1]
    rc, _, err = run("revoke", "0" * 12)
    assert rc == 1 and "key_not_found" in err
    with pytest.raises(SystemExit):
        main(["keys", "--file", path, "create", "--tenant", "acme", "--role", "root"])  # argparse refuses


def test_an_open_service_binds_loopback_only_unless_told() -> None:
    check_bind(["127.0.0.1", "::1", "localhost"], keys_configured=False, insecure_bind=False)
    with pytest.raises(ConfigurationError) as e:
        check_bind(["127.0.0.1", "0.0.0.0"], keys_configured=False, insecure_bind=False)
    assert code(e) == "insecure_bind"
    check_bind(["0.0.0.0"], keys_configured=True, insecure_bind=False)
    check_bind(["0.0.0.0"], keys_configured=False, insecure_bind=True)


def test_serve_refuses_an_open_public_bind_before_opening_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "SESSIONS_API_KEYS_FILE",
        "SESSIONS_API_KEYS",
        "SESSIONS_INSECURE_BIND",
        "SESSIONS_GRPC_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--host", "0.0.0.0", "--port", "1"])
    assert exit_.value.code == 2  # a configuration refused (service/cli: exit codes)
    assert "insecure_bind" in capsys.readouterr().err


async def test_a_revoked_key_is_refused_by_a_running_server(stack: Stack) -> None:
    r = await stack.call("alpha_writer", "GET", "/v1/users/u1/sessions")
    assert r.status_code == 200
    key_id = stack.keys["alpha_writer"].split("_")[1]
    revoke_key(stack.keys_file, key_id)
    r = await stack.call("alpha_writer", "GET", "/v1/users/u1/sessions")
    assert (r.status_code, r.json()["code"]) == (401, "revoked_api_key")


async def test_the_clients_send_their_key(stack: Stack) -> None:
    async with AsyncSessionsClient(client=stack.http, api_key=stack.keys["alpha_writer"]) as sdk:
        created = await sdk.create_session("u1", "sdk-1")
        assert created.session_id == "sdk-1"
    async with AsyncSessionsClient(client=stack.http) as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.create_session("u1", "sdk-2")
    server, port = create_grpc_server(stack.application, "127.0.0.1:0", stack.gate)
    await server.start()
    try:
        with GenAIPlatform(f"127.0.0.1:{port}", api_key=stack.keys["alpha_reader"], timeout=20) as platform:
            sessions = await asyncio.to_thread(platform.sessions.list_sessions, "u1")
        assert [s.session_id for s in sessions] == ["sdk-1"]
    finally:
        await server.stop(None)
