"""The control channel between the core and a relay worker: message names, limits, validation.

Both ends use this module, so a message one side builds is exactly what the other accepts.
Messages are JSON objects with a ``type``; ``decode`` checks the type is known for the
direction, that required fields are there with the right JSON types, and that ids are in the
shape SDP can carry (a participant id becomes an msid, RFC 8830: at most 64 token characters,
including the ``-video`` suffix). The wire format is in ``docs/PROTOCOL.md``, section 7.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from bot.errors import MessageTooLarge, ProtocolError, UnknownMessageType
from bot.signaling.envelope import encode
from bot.signaling.messages import MAX_SDP

__all__ = ["decode", "encode"]

MAX_MESSAGE_BYTES: Final = 256 * 1024
HEARTBEAT_SECONDS: Final = 20.0
NEGOTIATION_TIMEOUT_SECONDS: Final = 10.0
ROUTE: Final = "/relay"

# core -> worker
WELCOME: Final = "welcome"
JOIN: Final = "join"
ANSWER: Final = "answer"
LEAVE: Final = "leave"
CLOSE_ROOM: Final = "close_room"
STATS: Final = "stats"
# worker -> core
READY: Final = "ready"
LOAD: Final = "load"
RESULT: Final = "result"
OFFER: Final = "offer"
PEER_LOST: Final = "peer_lost"
ERROR: Final = "error"

REQUESTS: Final = frozenset({JOIN, ANSWER, LEAVE, CLOSE_ROOM, STATS})
TO_CORE: Final = frozenset({READY, LOAD, RESULT, OFFER, PEER_LOST, ERROR})

ROOM_ID: Final = re.compile(r"[A-Za-z0-9._~-]{1,64}")
PARTICIPANT_ID: Final = re.compile(r"[A-Za-z0-9._~-]{1,48}")
MAX_SDP_CHARS: Final = MAX_SDP  # the descriptions clients send, which the core passes on
# A load figure beyond this is a lie or a bug; below zero it would win every room.
MAX_COUNT: Final = 1_000_000

_ROOM = ("room", "room")
_PARTICIPANT = ("participant", "participant")
_FIELDS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    WELCOME: (("ticket", "str"),),
    JOIN: (("id", "int"), _ROOM, _PARTICIPANT, ("offer", "sdp:offer")),
    ANSWER: (("id", "int"), _ROOM, _PARTICIPANT, ("negotiation", "int"), ("answer", "sdp:answer")),
    LEAVE: (("id", "int"), _ROOM, _PARTICIPANT),
    CLOSE_ROOM: (("id", "int"), _ROOM),
    STATS: (("id", "int"),),
    READY: (("worker_id", "str"), ("rooms", "count"), ("participants", "count")),
    LOAD: (("rooms", "count"), ("participants", "count")),
    RESULT: (("id", "int"), ("ok", "bool")),
    OFFER: (_ROOM, _PARTICIPANT, ("negotiation", "int"), ("offer", "sdp:offer")),
    # ``join_id``: the ``id`` of the ``join`` request that made the connection which died.
    PEER_LOST: (_ROOM, _PARTICIPANT, ("join_id", "int")),
    ERROR: (("message", "str"),),
}


def decode(raw: str | bytes, allowed: frozenset[str]) -> dict[str, Any]:
    """A validated message whose type is in ``allowed``; ProtocolError (or a subclass) if not."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(size, MAX_MESSAGE_BYTES)
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested too deep
        raise ProtocolError("Control message is not valid JSON.") from exc
    if not isinstance(message, dict):
        raise ProtocolError("Control message must be a JSON object.")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("Control message has no 'type'.")
    if kind not in allowed:
        raise UnknownMessageType(kind[:40])
    for name, shape in _FIELDS[kind]:
        _check(message, name, shape)
    return message


def _check(message: dict[str, Any], name: str, shape: str) -> None:
    value = message.get(name)
    if shape == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif shape == "count":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
    elif shape == "bool":
        ok = isinstance(value, bool)
    elif shape == "str":
        ok = isinstance(value, str)
    elif shape == "room":
        ok = isinstance(value, str) and ROOM_ID.fullmatch(value) is not None
    elif shape == "participant":
        ok = isinstance(value, str) and PARTICIPANT_ID.fullmatch(value) is not None
    else:  # "sdp:<type>"
        ok = (
            isinstance(value, dict)
            and value.get("type") == shape[4:]
            and isinstance(value.get("sdp"), str)
            and len(value["sdp"]) <= MAX_SDP_CHARS
        )
    if not ok:
        raise ProtocolError(f"Field {name!r} of a {message['type']!r} message is {_want(shape)}.")


def _want(shape: str) -> str:
    return {
        "int": "not an integer",
        "count": f"not a whole number from 0 to {MAX_COUNT}",
        "bool": "not true or false",
        "str": "not a string",
        "room": "not a room id (1-64 letters, digits, '.', '_', '~', '-')",
        "participant": "not a participant id (1-48 letters, digits, '.', '_', '~', '-')",
    }.get(shape, f"not a session description of type {shape[4:]!r}")


def sdp(kind: str, text: str) -> dict[str, str]:
    """The ``{"type", "sdp"}`` object that carries a session description."""
    return {"type": kind, "sdp": text}


def ok(request_id: int, **fields: Any) -> str:
    return encode(RESULT, id=request_id, ok=True, **fields)


def failed(request_id: int, message: str) -> str:
    return encode(RESULT, id=request_id, ok=False, error=message)


def request_id_of(raw: str | bytes) -> int | None:
    """The ``id`` of a message that failed validation, to answer it; None if there is none."""
    try:
        message = json.loads(raw) if len(raw) <= MAX_MESSAGE_BYTES else None
    except (ValueError, RecursionError):
        return None
    value = message.get("id") if isinstance(message, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
