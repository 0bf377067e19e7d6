"""JSON encoding of events, and decoding of stream entries (with upcasting of old event versions).

One Encoder and one Decoder, built once and reused. A stream entry carries the event type beside the JSON,
so a consumer can route or dead-letter an unknown type without decoding it first. The log assigns the
aggregate version (the entry's ``version`` field) and the time of recording (the entry id's milliseconds);
decoding puts both into the envelope.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from .errors import UndecodableEvent
from .schema import EVENT_TYPES, AnyEvent, Event

__all__ = [
    "UPCASTERS",
    "RawEntry",
    "decode_entry",
    "decode_event",
    "encode_event",
    "position_ms",
    "recorded_at_of",
]

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)

# Old event type tag -> function turning its JSON object into the JSON object of the newer type. The only
# place where old versions are known; handlers see the latest types only. None yet: every type is v1.
UPCASTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class RawEntry(msgspec.Struct, frozen=True):
    """A stream entry as stored: position ``<ms>-<seq>``, type tag, assigned version, the event JSON."""

    partition: int
    position: str
    type: str
    version: int
    data: bytes


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str, type_tag: str | None = None) -> AnyEvent:
    """Decode one event's JSON, upcasting an old type first. Raises UndecodableEvent."""
    try:
        if type_tag is not None and type_tag in UPCASTERS:
            obj = msgspec.json.decode(data)
            while isinstance(obj, dict) and obj.get("type") in UPCASTERS:
                obj = UPCASTERS[obj["type"]](obj)
            event: AnyEvent = msgspec.convert(obj, AnyEvent)
            return event
        if type_tag is not None and type_tag not in EVENT_TYPES:
            raise UndecodableEvent(
                f"unknown event type {type_tag!r}", code="unknown_event_type", type=type_tag
            )
        return _decoder.decode(data)
    except msgspec.ValidationError as e:
        raise UndecodableEvent(f"the event does not match its schema: {e}") from e
    except msgspec.DecodeError as e:
        raise UndecodableEvent(f"the event is not valid JSON: {e}") from e
    except UnicodeEncodeError as e:  # a str holding lone surrogates: no UTF-8 text, so no JSON either
        raise UndecodableEvent(f"the event is not valid UTF-8 text: {e.reason}") from e
    except RecursionError as e:  # msgspec's answer to JSON nested deeper than the interpreter's stack
        raise UndecodableEvent("the event's JSON is nested too deeply") from e


def position_ms(position: str) -> int:
    return int(position.split("-", 1)[0])


def recorded_at_of(position: str) -> datetime:
    return datetime.fromtimestamp(position_ms(position) / 1000, UTC)


def _without_nulls(obj: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None or k in keep}


def _as_object(value: Any) -> Any:
    return {} if value == [] else value  # cjson, in the append script, cannot tell [] from {}


def _lenient(obj: Any) -> Any:
    """What a publisher may write and the append script accepts, in the shape the strict types read: a null
    where the schema has a default means the default, [] where an object is due is the empty object, an
    integral float (1.0, 1e3) where an integer is due is that integer (``strict=False`` below), and the
    version and recorded_at a publisher may have put in the envelope are the log's to assign."""
    if not isinstance(obj, dict):
        return obj
    out = _without_nulls(obj)
    out.pop("version", None)
    out.pop("recorded_at", None)
    if isinstance(out.get("actor"), dict):
        out["actor"] = _without_nulls(out["actor"])
    payload = _as_object(out.get("payload"))
    if isinstance(payload, dict):
        payload = _without_nulls(payload, keep=("value",))  # a memory value of null is a value
        if "metadata" in payload:
            payload["metadata"] = _as_object(payload["metadata"])
        messages = payload.get("messages")
        if isinstance(messages, list):
            payload["messages"] = [_lenient_message(m) for m in messages]
        out["payload"] = payload
    return out


def _lenient_message(m: Any) -> Any:
    if not isinstance(m, dict):
        return m
    m = _without_nulls(m)
    if "metadata" in m:
        m["metadata"] = _as_object(m["metadata"])
    calls = m.get("tool_calls")
    if calls == {}:
        m["tool_calls"] = []
    elif isinstance(calls, list):
        m["tool_calls"] = [_lenient_call(c) for c in calls]
    return m


def _lenient_call(c: Any) -> Any:
    if not isinstance(c, dict):
        return c
    c = _without_nulls(c)
    if isinstance(c.get("function"), dict):
        c["function"] = _without_nulls(c["function"])
    return c


def decode_entry(entry: RawEntry) -> AnyEvent:
    """The event of a stream entry, with the version and recorded_at the log assigned.

    What the log acknowledged, a consumer must read: the strict decoder first (every event the service or
    ``Publisher`` wrote), then, for a direct publisher's JSON that the script took but the strict types do
    not (a null for a default, ``1.0`` for an integer), the same types read leniently (``_lenient``)."""
    try:
        event = decode_event(entry.data, entry.type)
    except UndecodableEvent as strict:
        if strict.code == "unknown_event_type":
            raise
        try:
            obj = _lenient(msgspec.json.decode(entry.data))
            while isinstance(obj, dict) and isinstance(tag := obj.get("type"), str) and tag in UPCASTERS:
                obj = UPCASTERS[tag](obj)
            event = msgspec.convert(obj, AnyEvent, strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeEncodeError, RecursionError, TypeError):
            raise strict from None
    return msgspec.structs.replace(event, version=entry.version, recorded_at=recorded_at_of(entry.position))
