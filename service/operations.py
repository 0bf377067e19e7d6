"""The policy of every operation, declared once: its name, the role it needs, the checks its input passes
before anything runs, and the metric its appends count under.

Both adapters read this table and nothing else for these questions: the HTTP routes name their operation in
Litestar's ``opt`` (``service.http.guard`` reads it), the gRPC methods map to one in
``service.grpc.servicer.RPC_OPERATIONS``; ``service.security.gate.Gate.enter`` applies it. A route or method
that names no operation is refused at start-up (and by ``tests/security/test_policy.py``), so nothing can be
added without a role.

=================  =======  ==================================================================================
operation          role     input checked before the handler (``service.validation``)
=================  =======  ==================================================================================
create_session     writer   user_id, session_id: ids
get_session        reader   session_id
delete_session     writer   session_id
list_sessions      reader   user_id; limit <= 1000
add_messages       writer   session_id
get_messages       reader   session_id; limit <= 1000
save_memory        writer   user_id, session_id; key
get_memory         reader   user_id, session_id; key
delete_memory      writer   user_id, session_id; key
clear_memory       writer   user_id
publish_events     admin    (the log checks every event)
audit_events       reader   user_id, session_id; limit; **admin** when neither user_id nor session_id is given
session_events     reader   session_id; limit
forget_user        admin    user_id
metrics            admin
options            reader   (HTTP OPTIONS of any path: the methods it allows)
healthz, readyz,   public   (no key; they carry no tenant data)
openapi_json
=================  =======  ==================================================================================

Acting as an admin (``X-Actor: admin:...``, gRPC ``x-actor`` metadata) needs the admin role whatever the
operation. A command's appends count in ``sessions_appends_total{command=<operation>}`` (``Commands``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from events.errors import SessionsError
from events.log import AppendResult
from service.errors import status_of
from service.validation import check_id, check_key, check_limit

__all__ = ["OPERATIONS", "Observer", "Operation", "Role", "appends_of", "command", "operation"]

P = ParamSpec("P")
R = TypeVar("R")

Role = Literal["reader", "writer", "admin"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the API, as both adapters see it."""

    name: str
    role: Role | None  # None: public
    ids: tuple[str, ...] = ()  # inputs that are session or user ids (``check_id``)
    keys: tuple[str, ...] = ()  # inputs that are memory keys (``check_key``)
    paged: bool = False  # a ``limit`` input is a page size (``check_limit``)
    admin_unless: tuple[str, ...] = ()  # admin unless one of these inputs narrows it (to a user, a session)
    command: bool = False  # appends to the log: its appends and refusals are counted under ``name``

    def role_for(self, inputs: Mapping[str, Any]) -> Role | None:
        """The role a call needs, given its inputs (absent and empty inputs are the same)."""
        if self.admin_unless and not any(inputs.get(field) for field in self.admin_unless):
            return "admin"
        return self.role

    def check(self, inputs: Mapping[str, Any]) -> None:
        """Refuse malformed input (``BadRequest``) before anything runs. Absent inputs are not checked: an
        operation that needs one refuses its absence itself."""
        for field in self.ids:
            if (value := inputs.get(field)) is not None and value != "":
                check_id(str(value), field)
        for field in self.keys:
            if (value := inputs.get(field)) is not None and value != "":
                check_key(str(value))
        if self.paged and isinstance(limit := inputs.get("limit"), int):
            check_limit(limit)


_OPERATIONS = (
    Operation("create_session", "writer", ids=("user_id", "session_id"), command=True),
    Operation("get_session", "reader", ids=("session_id",)),
    Operation("delete_session", "writer", ids=("session_id",), command=True),
    Operation("list_sessions", "reader", ids=("user_id",), paged=True),
    Operation("add_messages", "writer", ids=("session_id",), command=True),
    Operation("get_messages", "reader", ids=("session_id",), paged=True),
    Operation("save_memory", "writer", ids=("user_id", "session_id"), keys=("key",), command=True),
    Operation("get_memory", "reader", ids=("user_id", "session_id"), keys=("key",)),
    Operation("delete_memory", "writer", ids=("user_id", "session_id"), keys=("key",), command=True),
    Operation("clear_memory", "writer", ids=("user_id",), command=True),
    Operation("publish_events", "admin", command=True),
    Operation(
        "audit_events",
        "reader",
        ids=("user_id", "session_id"),
        paged=True,
        admin_unless=("user_id", "session_id"),
    ),
    Operation("session_events", "reader", ids=("session_id",), paged=True),
    Operation("forget_user", "admin", ids=("user_id",), command=True),
    Operation("metrics", "admin"),
    Operation("options", "reader"),  # the OPTIONS answer Litestar adds to every path (its allowed methods)
    Operation("healthz", None),
    Operation("readyz", None),
    Operation("openapi_json", None),
)

OPERATIONS: Mapping[str, Operation] = {op.name: op for op in _OPERATIONS}


def operation(name: str) -> Operation:
    """The operation ``name``; ``KeyError`` for one nobody declared (an adapter refuses it at start-up)."""
    return OPERATIONS[name]


class Observer(Protocol):
    """What counts a command's appends (``service.metrics.Metrics``)."""

    def observe_appends(self, command: str, results: Iterable[AppendResult]) -> None: ...

    def observe_refusal(self, command: str) -> None: ...


def appends_of(out: Any) -> list[AppendResult]:
    """The appends a command's result holds: itself, a list of them, or its ``result`` / ``results``."""
    if isinstance(out, AppendResult):
        return [out]
    if isinstance(out, list):
        return [r for r in out if isinstance(r, AppendResult)]
    if isinstance(results := getattr(out, "results", None), list):
        return appends_of(results)
    if isinstance(result := getattr(out, "result", None), AppendResult):
        return [result]
    return []


def command(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Declare a core method as the operation ``name``: its arguments named like the operation's inputs are
    checked (ids in a body reach the core unchecked by the gate), and its appends and refusals (an error with
    a 4xx status) are counted by the instance's ``metrics`` (an ``Observer``, or None). The one place both
    adapters' writes are counted."""
    op = OPERATIONS[name]

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        # Where each checked input sits in the call, worked out once (not a Signature.bind per call: this
        # wraps every append).
        params = list(inspect.signature(fn).parameters)
        checked = [(field, params.index(field)) for field in (*op.ids, *op.keys) if field in params]

        def inputs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
            return {
                field: kwargs[field] if field in kwargs else args[i] if i < len(args) else None
                for field, i in checked
            }

        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            observer: Observer | None = getattr(args[0], "metrics", None)
            try:
                if checked:
                    op.check(inputs(args, kwargs))
                out = await fn(*args, **kwargs)
            except SessionsError as e:
                if observer is not None and 400 <= status_of(e) < 500:
                    observer.observe_refusal(name)
                raise
            if observer is not None:
                observer.observe_appends(name, appends_of(out))
            return out

        return run

    return decorate
