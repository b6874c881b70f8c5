"""The signaling message envelope: one JSON object per websocket text message.

Every message is ``{"type": "<kind>", ...}``. The size limit is checked on the raw bytes before
any parsing, and a type this side does not know is rejected rather than ignored, so that later
message kinds (SDP, key transport) slot in by being added to the receiver's list.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Final

from aiohttp import WSMessage, WSMsgType

from bot.errors import MessageTooLarge, ProtocolError, UnknownMessageType

MAX_MESSAGE_BYTES: Final = 64 * 1024
# aiohttp drops anything this big before it reaches us; below it we answer with our own error.
WIRE_LIMIT: Final = 4 * MAX_MESSAGE_BYTES
# A client's session description may be longer than other messages, up to the wire limit: an
# answer to the relay has an audio and a video line (some 1.2 kB each) for everyone else in
# the meeting, so 64 KiB would cut a meeting of 26 off (messages.MAX_SDP says how long).
SDP_CARRIERS: Final = frozenset({"publish", "answer"})
# docs/PROTOCOL.md's version: every hello names it, and the hub speaks only this one.
PROTOCOL_VERSION: Final = 2
_MAX_TYPE_LENGTH: Final = 32


def encode(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def decode(
    raw: str | bytes, accepted: Collection[str], *, max_bytes: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    """Parse one message whose type must be in ``accepted``; ProtocolError otherwise. Of
    the types in ``SDP_CARRIERS``, one may be as long as the wire limit."""
    size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
    longest = max(max_bytes, WIRE_LIMIT) if SDP_CARRIERS & set(accepted) else max_bytes
    if size > longest:
        raise MessageTooLarge(size, longest)
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("Message is not valid JSON.") from None
    if not isinstance(message, dict):
        raise ProtocolError("Message must be a JSON object.")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind or len(kind) > _MAX_TYPE_LENGTH:
        raise ProtocolError("Message has no valid 'type' field.")
    if kind not in accepted:
        raise UnknownMessageType(kind)
    if size > max_bytes and kind not in SDP_CARRIERS:
        raise MessageTooLarge(size, max_bytes)
    return message


def decode_frame(msg: WSMessage, accepted: Collection[str]) -> dict[str, Any] | None:
    """The message in a websocket frame; None if the peer closed; ProtocolError otherwise."""
    if msg.type == WSMsgType.TEXT:
        return decode(msg.data, accepted)
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        return None
    if msg.type == WSMsgType.BINARY:
        raise ProtocolError("Binary messages are not part of the protocol.")
    if msg.type == WSMsgType.ERROR:
        raise ProtocolError(f"Message rejected: {msg.data}")
    return None


def text_field(message: dict[str, Any], name: str, *, max_length: int = 256) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ProtocolError(f"Field {name!r} must be a non-empty string.")
    return value
