"""Hypothesis over the event decoder: arbitrary bytes and text, and mutations of valid events. Only
``UndecodableEvent`` may come out; what decodes encodes again and decodes to the same event."""

from __future__ import annotations

import os
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import UndecodableEvent, decode_entry, decode_event, encode_event
from events.codec import RawEntry
from events.schema import EVENT_TYPES

from .strategies import mutated, odd_text, valid_jsons

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
tags = st.none() | st.sampled_from(sorted(EVENT_TYPES)) | odd_text
# Real stream ids: milliseconds since the epoch (up to year 9999) and a sequence number.
positions = st.builds(
    lambda ms, seq: f"{ms}-{seq}", st.integers(0, 253_402_300_799_999), st.integers(0, 2**64 - 1)
)


def _decodes_or_refuses(data: bytes | str, tag: str | None) -> None:
    try:
        event = decode_event(data, tag)
    except UndecodableEvent as e:
        assert e.code in ("undecodable_event", "unknown_event_type") and e.message
        return
    again = decode_event(encode_event(event), tag)
    assert again == event


@FUZZ
@given(data=st.binary(max_size=300), tag=tags)
def test_arbitrary_bytes(data: bytes, tag: str | None) -> None:
    _decodes_or_refuses(data, tag)


@FUZZ
@given(data=st.text(st.characters() | st.characters(categories=["Cs"]), max_size=200), tag=tags)
def test_arbitrary_text_even_lone_surrogates(data: str, tag: str | None) -> None:
    _decodes_or_refuses(data, tag)


@FUZZ
@given(doc=mutated(valid_jsons()), tag_from_doc=st.booleans())
def test_mutated_valid_events(doc: Any, tag_from_doc: bool) -> None:
    tag = doc.get("type") if tag_from_doc and isinstance(doc, dict) else None
    _decodes_or_refuses(msgspec.json.encode(doc), tag if isinstance(tag, str) else None)


@FUZZ
@given(doc=mutated(valid_jsons()), position=positions, version=st.integers(0, 2**63 - 1), tag=tags)
def test_mutated_stream_entries(doc: Any, position: str, version: int, tag: str | None) -> None:
    entry = RawEntry(3, position, tag or "", version, msgspec.json.encode(doc))
    try:
        event = decode_entry(entry)
    except UndecodableEvent:
        return
    assert event.version == version and event.recorded_at is not None


@FUZZ
@given(depth=st.integers(500, 20_000), opener=st.sampled_from(["[", '{"a":']), where=st.booleans())
def test_json_nested_deeper_than_the_stack(depth: int, opener: str, where: bool) -> None:
    deep = opener * depth
    data = f'{{"type": "session.created.v1", "payload": {{"metadata": {{"a": {deep}' if where else deep
    _decodes_or_refuses(data.encode(), None)
