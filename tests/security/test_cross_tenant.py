"""Two tenants with the same user and session ids fill data with their own marker strings, then each reads
everything it can (sessions, message pages and cursors both ways, memory in every scope, the audit trail,
errors, the other tenant's cursors) over HTTP and gRPC: no response body, header or error carries the other
tenant's marker. 1,000+ requests on the embedded default; a smaller run on Redis + PostgreSQL."""

from __future__ import annotations

from typing import Any

import grpc
import httpx

from proto import sessions_pb2 as pb
from tests.security.conftest import Stack
from tests.security.helpers import SESSIONS, USERS, Seeded, leaks, seed


class Sweep:
    def __init__(self, stack: Stack, me: Seeded, other: Seeded, limits: tuple[int, ...]) -> None:
        self.stack, self.me, self.other, self.limits = stack, me, other, limits
        self.leaked: list[tuple[str, str, int, str]] = []
        self.own_seen = 0

    def check(self, where: str, r: httpx.Response) -> httpx.Response:
        if leaks(r, self.other.marker):
            self.leaked.append((self.me.tenant, where, r.status_code, r.text[:300]))
        if self.me.marker in r.text:
            self.own_seen += 1
        assert r.status_code < 500, (where, r.text)
        return r

    async def get(self, who: str, path: str, **params: Any) -> httpx.Response:
        r = self.check(f"{path} {params}", await self.stack.call(who, "GET", path, params=params))
        if r.status_code == 200 and isinstance(cursor := r.json().get("next_cursor"), str):
            self.me.cursors.append(cursor)
        return r

    async def pages(self, who: str, path: str, field: str = "after", **params: Any) -> int:
        """Follow next_cursor to the end; the number of pages."""
        n, cursor = 0, None
        while True:
            extra = {field: cursor} if cursor else {}
            r = await self.get(who, path, **params, **extra)
            n += 1
            if r.status_code != 200 or not (cursor := r.json().get("next_cursor")) or n > 50:
                return n

    async def http(self, key: str, admin: bool) -> None:
        for user in USERS:
            for limit in self.limits:
                await self.pages(key, f"/v1/users/{user}/sessions", limit=limit)
            await self.get(key, f"/v1/users/{user}/memory")
            for key_name in ("topic", "prefs/lang", f"k-{self.other.marker}", f"k-{self.me.marker}"):
                await self.get(key, f"/v1/users/{user}/memory", key=key_name)
            await self.pages(key, "/v1/events", user_id=user, limit=4)
            for sid in SESSIONS[user]:
                await self.get(key, f"/v1/sessions/{sid}")
                await self.get(key, f"/v1/users/{user}/memory", session_id=sid)
                await self.get(key, f"/v1/users/{user}/memory", session_id=sid, merged="true")
                for limit in self.limits:
                    for order in ("asc", "desc"):
                        await self.pages(key, f"/v1/sessions/{sid}/messages", limit=limit, order=order)
                    await self.get(key, f"/v1/sessions/{sid}/messages", limit=limit, offset=1)
                    await self.pages(key, f"/v1/sessions/{sid}/events", limit=limit)
                first = (await self.get(key, f"/v1/sessions/{sid}/messages", limit=2, order="desc")).json()
                if first.get("next_cursor"):
                    await self.pages(key, f"/v1/sessions/{sid}/messages", field="before", limit=2)
                await self.get(key, "/v1/events", session_id=sid)
        if admin:
            for limit in self.limits:
                await self.pages(key, "/v1/events", limit=limit)
            await self.get(key, "/v1/events", type="memory.saved.v1")
        # errors: unknown ids, malformed cursors, and the other tenant's cursors
        await self.get(key, "/v1/sessions/nope")
        await self.get(key, "/v1/sessions/nope/messages")
        await self.get(key, "/v1/sessions/s1/messages", after="not-a-cursor")
        for cursor in self.other.cursors[:40]:
            await self.get(key, "/v1/sessions/s1/messages", after=cursor)
            await self.get(key, "/v1/users/u1/sessions", after=cursor)
            if admin:
                await self.get(key, "/v1/events", after=cursor)

    async def grpc(self, key: str, admin: bool) -> None:
        md = self.stack.metadata(key)

        async def call(method: str, **kw: Any) -> None:
            self.stack.requests += 1
            try:
                reply: Any = await getattr(self.stack.stub, method)(
                    getattr(pb, f"{method}Request")(**kw), metadata=md
                )
            except grpc.aio.AioRpcError as e:
                reply = e
                assert e.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), e
            if leaks(reply, self.other.marker):
                self.leaked.append((self.me.tenant, f"grpc {method} {kw}", 0, str(reply)[:300]))

        for user in USERS:
            await call("ListSessions", user_id=user)
            await call("GetMemory", user_id=user)
            await call("GetEvents", user_id=user)
            for sid in SESSIONS[user]:
                await call("GetMessages", session_id=sid)
                await call("GetMessages", session_id=sid, strategy="last_n", limit=3)
                await call("GetMemory", user_id=user, session_id=sid, merged=True)
                await call("GetEvents", session_id=sid)
        if admin:
            await call("GetEvents")
        for cursor in self.other.cursors[:10]:
            await call("GetMessages", session_id="s1", after=cursor)


async def sweep_both(stack: Stack, messages: int, limits: tuple[int, ...]) -> list[Any]:
    alpha = await seed(stack, "alpha", messages)
    beta = await seed(stack, "beta", messages)
    sweeps = [Sweep(stack, alpha, beta, limits), Sweep(stack, beta, alpha, limits)]
    for _ in range(2):  # the second round reads with the cursors the other tenant collected in the first
        for s in sweeps:
            for role in ("reader", "admin"):
                await s.http(f"{s.me.tenant}_{role}", admin=role == "admin")
                await s.grpc(f"{s.me.tenant}_{role}", admin=role == "admin")
    leaked = [leak for s in sweeps for leak in s.leaked]
    assert leaked == []
    for s in sweeps:
        assert s.own_seen > 50, "the sweep must see its own tenant's data, or it proves nothing"
        assert s.me.cursors, "the sweep must have paged"
    return leaked


async def test_no_response_carries_another_tenants_data(stack: Stack) -> None:
    leaked = await sweep_both(stack, messages=6, limits=(1, 2, 5))
    assert leaked == []
    assert stack.requests >= 1000, stack.requests


async def test_no_response_carries_another_tenants_data_on_the_real_servers(real_stack: Stack) -> None:
    leaked = await sweep_both(real_stack, messages=3, limits=(2,))
    assert leaked == []
    assert real_stack.requests >= 200, real_stack.requests
