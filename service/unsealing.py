"""Opening sealed values on the way out: what the read models hold is what the log holds, ciphertext
included (``service.sealing``). A value whose key is gone reads as erased: a message's ``content`` None (a
tool call's ``arguments`` ``""``) with ``metadata["erased"] = True``; a memory value None; an audit payload
with ``"erased": True`` and the sealed fields None. Plain values (events published raw, or written with
encryption off) pass through. A sealed value never goes out as it is: with no key, the wrong key, no known
owner, or a body that does not open, it reads as erased."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from projections.api import AuditRecord, MemoryRecord, MessageRecord
from service.keyring import DataKeys
from service.sealing import DataKey, Erased, aad, is_sealed, open_text, open_value

__all__ = ["Unsealer"]

logger = logging.getLogger("service.unsealing")


class Unsealer:
    """Opens sealed values with the owners' data keys (one key lookup per user and call)."""

    def __init__(self, data_keys: DataKeys) -> None:
        self.data_keys = data_keys

    async def messages(
        self, tenant: str, owner: str | None, session_id: str, rows: list[MessageRecord]
    ) -> list[MessageRecord]:
        if not any(_message_sealed(m) for m in rows):
            return rows
        # No owner known (a log that lost its state, say): nothing can be opened, so it reads as erased,
        # never as the ciphertext.
        key = await self.data_keys.get(tenant, owner) if owner is not None else None
        associated = aad(tenant, owner or "", "session", session_id)
        return [_open_message(key, associated, m) if _message_sealed(m) else m for m in rows]

    async def memory(
        self, tenant: str, user_id: str, records: dict[str, MemoryRecord]
    ) -> dict[str, MemoryRecord]:
        if not any(is_sealed(r.value) for r in records.values()):
            return records
        key = await self.data_keys.get(tenant, user_id)
        out = {}
        for name, r in records.items():
            if is_sealed(r.value):
                kind, agg = ("memory", user_id) if r.session_id is None else ("session", r.session_id)
                try:
                    value = open_value(key, aad(tenant, user_id, kind, agg), r.value)
                except Erased:
                    value = None
                r = msgspec.structs.replace(r, value=value)
            out[name] = r
        return out

    async def audit(self, records: list[AuditRecord]) -> list[AuditRecord]:
        keys: dict[tuple[str, str], DataKey | None] = {}
        out = []
        for r in records:
            if _payload_sealed(r.type, r.payload):
                who = (r.tenant, r.user_id or "")
                if who not in keys:
                    keys[who] = await self.data_keys.get(*who) if r.user_id is not None else None
                associated = aad(r.tenant, who[1], r.aggregate_kind, r.aggregate_id)
                r = msgspec.structs.replace(
                    r, payload=_open_payload(keys[who], associated, r.type, r.payload)
                )
            out.append(r)
        return out


def _message_sealed(m: MessageRecord | dict[str, Any]) -> bool:
    get = m.get if isinstance(m, dict) else lambda f: getattr(m, f, None)
    if is_sealed(get("content")):
        return True
    return any(is_sealed(((c or {}).get("function") or {}).get("arguments")) for c in get("tool_calls") or ())


def _open_calls(key: DataKey | None, associated: bytes, calls: Any) -> tuple[Any, bool]:
    if not calls:
        return calls, False
    erased = False
    out = []
    for c in calls:
        f = c.get("function") if isinstance(c, dict) else None
        if isinstance(f, dict) and is_sealed(f.get("arguments")):
            try:
                args = open_text(key, associated, f["arguments"])
            except Erased:
                args, erased = "", True
            c = {**c, "function": {**f, "arguments": args}}
        out.append(c)
    return out, erased


def _open_message(key: DataKey | None, associated: bytes, m: MessageRecord) -> MessageRecord:
    content, erased = m.content, False
    if content is not None and is_sealed(content):
        try:
            content = open_text(key, associated, content)
        except Erased:
            content, erased = None, True
    calls, calls_erased = _open_calls(key, associated, m.tool_calls)
    metadata = m.metadata
    if erased or calls_erased:
        metadata = {**(metadata or {}), "erased": True}
    return msgspec.structs.replace(m, content=content, tool_calls=calls, metadata=metadata)


def _payload_sealed(type_: str, payload: dict[str, Any]) -> bool:
    if type_ == "memory.saved.v1":
        return is_sealed(payload.get("value"))
    if type_ == "session.messages_added.v1":
        return any(isinstance(m, dict) and _message_sealed(m) for m in payload.get("messages") or ())
    return False


def _open_payload(
    key: DataKey | None, associated: bytes, type_: str, payload: dict[str, Any]
) -> dict[str, Any]:
    erased = False
    if type_ == "memory.saved.v1":
        try:
            value = open_value(key, associated, payload["value"])
        except Erased:
            value, erased = None, True
        out = {**payload, "value": value}
    else:
        messages = []
        for m in payload.get("messages") or ():
            if isinstance(m, dict) and _message_sealed(m):
                m = dict(m)
                if is_sealed(m.get("content")):
                    try:
                        m["content"] = open_text(key, associated, m["content"])
                    except Erased:
                        m["content"], erased = None, True
                m["tool_calls"], calls_erased = _open_calls(key, associated, m.get("tool_calls"))
                erased = erased or calls_erased
            messages.append(m)
        out = {**payload, "messages": messages}
    if erased:
        out["erased"] = True
    return out
