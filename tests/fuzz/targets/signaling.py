"""Targets for the signaling websocket: the envelope, and each message's definition, read by
the hub (what clients send) and by the Python client (what a hub sends)."""

from __future__ import annotations

from bot.errors import ProtocolError
from bot.signaling.envelope import WIRE_LIMIT, decode
from bot.signaling.messages import ALL, HELLO, SESSION, TO_CLIENT, Message, parse
from tests.fuzz.targets import as_received, expect

_EVERY_TYPE = frozenset(m.type for m in ALL)


def signaling_envelope(data: bytes) -> None:
    for raw in as_received(data):
        try:
            message = decode(raw, _EVERY_TYPE)
        except ProtocolError:
            continue
        expect(message["type"] in _EVERY_TYPE, "only the types accepted")


def _check(raw: str | bytes, accepted: dict[str, Message], max_bytes: int | None = None) -> None:
    try:
        if max_bytes is None:
            message = parse(raw, accepted)
        else:
            message = parse(raw, accepted, max_bytes=max_bytes)
    except ProtocolError:
        return
    definition = accepted[message["type"]]
    expect(all(f.holds(message) for f in definition.fields), "every field as defined")


def signaling_to_server(data: bytes) -> None:
    """The hello that opens a connection, and every message of an open session."""
    for raw in as_received(data):
        _check(raw, {HELLO.type: HELLO})
        _check(raw, dict(SESSION))


def signaling_to_client(data: bytes) -> None:
    for raw in as_received(data):
        _check(raw, dict(TO_CLIENT), WIRE_LIMIT)
