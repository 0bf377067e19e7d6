"""``sessions keys create|list|revoke`` (the API keys file, ``service.security``) and ``sessions forget-user``
(erasure, ``service.erasure``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from events.errors import ConfigurationError
from service.settings import ServiceSettings

__all__ = ["add_admin_commands"]


def add_admin_commands(sub: Any) -> None:
    _add_key_commands(sub)
    forget_p = sub.add_parser(
        "forget-user",
        help="erase a user: delete their sessions, destroy their data key, remove their rows",
    )
    forget_p.add_argument("user_id", metavar="USER")
    forget_p.add_argument("--tenant", help="the user's tenant (default: SESSIONS_DEFAULT_TENANT)")
    forget_p.add_argument(
        "--rewrite-aof", action="store_true", help="then ask Redis to rewrite its AOF (BGREWRITEAOF)"
    )
    forget_p.set_defaults(handler=_forget_user)


# -- keys -------------------------------------------------------------------------------------------------
def _add_key_commands(sub: Any) -> None:
    keys_p = sub.add_parser("keys", help="API keys: create, list, revoke (SESSIONS_API_KEYS_FILE)")
    keys_p.add_argument("--file", help="the keys file (default: SESSIONS_API_KEYS_FILE)")
    keys_sub = keys_p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create_p = keys_sub.add_parser("create", help="create a key; prints it once (only its hash is stored)")
    create_p.add_argument("--tenant", required=True)
    create_p.add_argument("--role", required=True, choices=["reader", "writer", "admin"])
    create_p.add_argument("--name", help="a label shown by `keys list`")
    create_p.set_defaults(handler=_keys_create)
    keys_sub.add_parser("list", help="the keys (never a secret or a hash)").set_defaults(handler=_keys_list)
    revoke_p = keys_sub.add_parser("revoke", help="revoke a key by id (a running server notices within ~1 s)")
    revoke_p.add_argument("id")
    revoke_p.set_defaults(handler=_keys_revoke)


def _keys_file(args: argparse.Namespace, settings: ServiceSettings) -> Path:
    path = args.file or settings.api_keys_file
    if not path:
        raise ConfigurationError(
            "name the keys file: --file PATH or SESSIONS_API_KEYS_FILE", code="keys_file_required"
        )
    return Path(path)


def _keys_create(args: argparse.Namespace, settings: ServiceSettings) -> int:
    from service.security.keys import create_key

    key, full = create_key(_keys_file(args, settings), args.tenant, args.role, args.name)
    print(full)
    print(
        f"key {key.id}: tenant {key.tenant}, role {key.role}; store it now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def _keys_list(args: argparse.Namespace, settings: ServiceSettings) -> int:
    from service.security.keys import load_keys_file

    for k in load_keys_file(_keys_file(args, settings)):
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        print(f"{k.id}  {k.tenant}  {k.role}  {state}  {k.created_at or '-'}  {k.name or ''}".rstrip())
    return 0


def _keys_revoke(args: argparse.Namespace, settings: ServiceSettings) -> int:
    from service.security.keys import revoke_key

    key = revoke_key(_keys_file(args, settings), args.id)
    print(f"revoked {key.id} ({key.tenant}, {key.role})")
    return 0


# -- forget-user ------------------------------------------------------------------------------------------
async def _forget_user(args: argparse.Namespace, settings: ServiceSettings) -> int:
    """Erase a user. The ids are checked as the API checks them (``invalid_id``, ``invalid_tenant``: exit 2).
    A user with nothing to erase (no session, no memory, no data key: unknown, or forgotten before) is said
    so in a ``nothing to erase`` line; the erasure still runs (it is idempotent) and the exit code is 0, so
    running it again after a failure is always safe."""
    from consumers.cli import open_resources
    from events.schema import Actor
    from service.app import Application
    from service.request import Context
    from service.validation import check_id, check_tenant

    user_id = check_id(args.user_id, "user_id")
    tenant = check_tenant(args.tenant or settings.default_tenant)
    if settings.embedded:
        raise ConfigurationError(
            "the embedded service keeps its data in its own process: forget the user through it"
            " (POST /v1/users/{user_id}/forget), or set REDIS_URL and SESSION_STORAGE",
            code="embedded_service",
        )
    # The API's projectors apply the erasure; this process only appends and waits for them.
    settings = dataclasses.replace(settings, projector=False)
    ctx = Context(tenant=tenant, actor=Actor(kind="admin", id="cli"))
    async with open_resources(settings) as (log, read_model):
        app = Application(log, read_model, settings=settings)
        try:
            memory = await read_model.get_memory(tenant, user_id)
            result = await app.forget_user(ctx, user_id, rewrite_aof=args.rewrite_aof)
        finally:
            await app.close()
    if not (result.sessions_deleted or result.key_destroyed or memory):
        print(
            f"nothing to erase: tenant {tenant!r} has no session, no memory and no data key of user"
            f" {user_id!r} (unknown, or forgotten before)"
        )
    print(
        f"forgotten: {len(result.sessions_deleted)} sessions deleted, data key destroyed:"
        f" {'yes' if result.key_destroyed else 'no (there was none)'}, user.forgotten.v1 at"
        f" {result.result.partition}:{result.result.position}"
    )
    if args.rewrite_aof:
        print(f"AOF rewrite: {result.aof_rewrite}")
    else:
        print("note: Redis' append-only file keeps the destroyed key until it is rewritten (BGREWRITEAOF)")
    return 0
