"""The event schema: JSON round trips, the committed JSON Schema, decoding errors and upcasting."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from events import UndecodableEvent, decode_event, encode_event
from events import codec as codec_module
from events.jsonschema import generate
from events.schema import EVENT_TYPES, new_event_id

from .factories import added, call, cleared, created, deleted, mem_deleted, msg, saved

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "events.schema.json"


def test_committed_json_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == generate(), (
        "docs/events.schema.json is stale: run `python -m events.jsonschema > docs/events.schema.json`"
    )


def test_every_event_type_is_in_the_schema() -> None:
    defs = json.loads(SCHEMA_FILE.read_text())["$defs"]
    names = {cls.__name__ for cls in EVENT_TYPES.values()}
    tags = {d["properties"]["type"]["enum"][0] for name, d in defs.items() if name in names}
    assert tags == set(EVENT_TYPES)


@pytest.mark.parametrize(
    "event",
    [
        created("s1", "u1", plan="pro"),
        added(
            "s1",
            msg("user", "héllo ✓"),
            msg("assistant", None, tool_calls=[call("c1", "f", '{"x": 1}')]),
            msg("tool", "42", tool_call_id="c1", name="f"),
        ),
        deleted("s1"),
        saved("u1", "allergies", {"drugs": ["penicillin"], "n": 12345678901234567890}),
        saved("u1", "k", None, session="s1"),
        mem_deleted("u1", "k"),
        cleared("u1", session="s1"),
    ],
)
def test_round_trip(event: object) -> None:
    data = encode_event(event)  # type: ignore[arg-type]
    back = decode_event(data, json.loads(data)["type"])
    assert back == event
    assert msgspec.json.decode(data)["type"] in EVENT_TYPES


def test_timestamps_must_carry_a_time_zone() -> None:
    data = json.loads(encode_event(created("s1", "u1")))
    data["occurred_at"] = "2026-01-01T00:00:00"
    with pytest.raises(UndecodableEvent):
        decode_event(json.dumps(data).encode())


def test_undecodable_and_unknown_types_are_typed_errors() -> None:
    with pytest.raises(UndecodableEvent) as err:
        decode_event(b"{nope", "session.created.v1")
    assert err.value.code == "undecodable_event"
    with pytest.raises(UndecodableEvent) as err:
        decode_event(b"{}", "session.renamed.v9")
    assert err.value.code == "unknown_event_type"


def test_event_ids_are_uuid7_and_sort_by_time() -> None:
    ids = [new_event_id() for _ in range(100)]
    assert all(i.version == 7 for i in ids)
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)


def test_upcasters_convert_old_versions_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    old = json.loads(encode_event(created("s1", "u1")))
    old["type"] = "session.created.v0"
    old["payload"] = {"owner": old["payload"].pop("user_id")}

    def v0_to_v1(obj: dict) -> dict:  # type: ignore[type-arg]
        return {**obj, "type": "session.created.v1", "payload": {"user_id": obj["payload"]["owner"]}}

    monkeypatch.setitem(codec_module.UPCASTERS, "session.created.v0", v0_to_v1)
    event = decode_event(json.dumps(old).encode(), "session.created.v0")
    assert event.payload.user_id == "u1"  # type: ignore[union-attr]
    assert isinstance(event.occurred_at, datetime)
