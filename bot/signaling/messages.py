"""The signaling messages of ``docs/PROTOCOL.md`` section 6: one definition per message.

Each definition says which way the message goes, its fields, their JSON types and their
limits. Both ends use this module, as both ends of the relay channel use ``relay/control.py``:
the hub checks what clients send and what it builds itself, the Python client checks what the
hub sends, and ``tests/test_signaling_messages.py`` holds the table in the protocol document
to these definitions, message by message and field by field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from bot.errors import ProtocolError
from bot.signaling.envelope import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, decode

MAX_ID: Final = 64
MAX_TOKEN: Final = 256
MAX_KEY_PAYLOAD: Final = 16_384
# Some 80 participants' lines; the relay's control channel takes the same (MAX_SDP_CHARS).
MAX_SDP: Final = 200_000
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


class Direction(Enum):
    TO_SERVER = "client → server"
    TO_CLIENT = "server → client"


@dataclass(frozen=True)
class Shape:
    """What a field may hold: ``wanted`` finishes "Field 'x' must be …", ``doc`` is how the
    protocol document's tables write it, and ``definition`` the fields of a named object."""

    accepts: Callable[[object], bool]
    wanted: str
    doc: str
    definition: str = ""


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"

    def __init__(self, version: object) -> None:
        spoken = f"version {version}" if _is_int(version) else "an older version"
        super().__init__(
            f"This client speaks {spoken} of the meeting protocol and this server speaks version "
            f"{PROTOCOL_VERSION}: reload the page, or update conclave."
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def text(max_length: int) -> Shape:
    return Shape(
        lambda v: isinstance(v, str) and 0 < len(v) <= max_length,
        f"a non-empty string of at most {max_length:,} characters",
        f"text ≤{max_length:,}",
    )


def base64url(size: int) -> Shape:
    chars = -(-size * 4 // 3)  # unpadded
    return Shape(
        lambda v: isinstance(v, str) and len(v) == chars and _BASE64URL.fullmatch(v) is not None,
        f"{size} bytes as unpadded base64url ({chars} characters)",
        f"base64url of {size} bytes",
    )


VERSION: Final = Shape(lambda v: _is_int(v) and v == PROTOCOL_VERSION, "2", f"{PROTOCOL_VERSION}")
STRING: Final = Shape(lambda v: isinstance(v, str), "a string", "string")
INTEGER: Final = Shape(_is_int, "an integer", "integer")
BOOLEAN: Final = Shape(lambda v: isinstance(v, bool), "true or false", "boolean")
OBJECT: Final = Shape(lambda v: isinstance(v, dict), "an object", "object")
SENDER_INDEX: Final = Shape(
    lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 0xFFFF,
    "an integer from 1 to 65535",
    "integer 1..65535",
)


def sdp(kind: str, max_length: int | None = None) -> Shape:
    limit = "" if max_length is None else f" ≤{max_length:,}"

    def accepts(v: object) -> bool:
        return (
            isinstance(v, dict)
            and v.get("type") == kind
            and isinstance(v.get("sdp"), str)
            and (max_length is None or len(v["sdp"]) <= max_length)
        )

    return Shape(accepts, f"an SDP {kind}", f'{{type: "{kind}", sdp: string{limit}}}')


def description(value: Mapping[str, Any]) -> dict[str, str]:
    """A checked session description with nothing but its two fields, to pass on."""
    return {"type": str(value["type"]), "sdp": str(value["sdp"])}


@dataclass(frozen=True)
class Field:
    name: str
    shape: Shape
    optional: bool = False

    def holds(self, message: Mapping[str, Any]) -> bool:
        if self.optional and self.name not in message:
            return True
        return self.shape.accepts(message.get(self.name))

    def check(self, message: Mapping[str, Any], kind: str) -> None:
        if self.holds(message):
            return
        if self.shape is VERSION:
            # Its own code, so that an outdated client can say "update me", not "bug".
            raise UnsupportedVersion(message.get(self.name))
        raise ProtocolError(
            f"Field {self.name!r} of a {kind!r} message must be {self.shape.wanted}."
        )

    @property
    def doc(self) -> str:
        return f"`{self.name}`{'?' if self.optional else ''}: {self.shape.doc}"


def _fields_doc(fields: tuple[Field, ...]) -> str:
    return ", ".join(f.doc for f in fields)


def record(name: str, *fields: Field) -> Shape:
    """A named JSON object: the tables say its name, and define it once."""

    def accepts(value: object) -> bool:
        return isinstance(value, dict) and all(f.holds(value) for f in fields)

    names = ", ".join(f.name for f in fields)
    return Shape(accepts, f"an object with {names}", f"*{name}*", _fields_doc(fields))


def list_of(item: Shape) -> Shape:
    def accepts(value: object) -> bool:
        return isinstance(value, list) and all(item.accepts(v) for v in value)

    return Shape(accepts, f"a list of which each is {item.wanted}", f"[{item.doc}, …]")


ROSTER_ENTRY: Final = record(
    "roster entry",
    Field("participant_id", STRING),
    Field("name", STRING),
    Field("role", STRING),
    Field("sender_index", SENDER_INDEX),
    # Kept loose on purpose: a client judges announced keys itself (section 4.2), and one that
    # does not verify leaves the code pending rather than the meeting.
    Field("keys", OBJECT, optional=True),
)
ROSTER: Final = list_of(ROSTER_ENTRY)
ROOM_INFO: Final = record(
    "room",
    Field("id", STRING),
    Field("topic", STRING),
    Field("state", STRING),
    Field("lobby", BOOLEAN),
)
WAITING_ENTRY: Final = record("waiting", Field("participant_id", STRING), Field("name", STRING))
# An RTCIceServer, as a browser's RTCPeerConnection takes it.
ICE_SERVER: Final = record(
    "ice server",
    Field("urls", list_of(STRING)),
    Field("username", STRING, optional=True),
    Field("credential", STRING, optional=True),
)
# The named objects, each defined once in the protocol document.
NAMED: Final = (ROSTER_ENTRY, ROOM_INFO, WAITING_ENTRY, ICE_SERVER)


@dataclass(frozen=True)
class Message:
    type: str
    direction: Direction
    fields: tuple[Field, ...] = ()
    # One of these field sets must follow ``fields``: the first whose first field is present,
    # otherwise the last. (A hello resumes, or redeems an invite.)
    forms: tuple[tuple[Field, ...], ...] = ()
    # Whether a guest still waiting in the lobby may send it.
    in_lobby: bool = False

    def check(self, message: dict[str, Any]) -> dict[str, Any]:
        """``message`` (a decoded object of this type); ProtocolError if a field is wrong."""
        for f in self.fields + self._form(message):
            f.check(message, self.type)
        return message

    def encode(self, **fields: Any) -> str:
        message = self.check({"type": self.type, **fields})
        return json.dumps(message, separators=(",", ":"))

    @property
    def doc(self) -> str:
        """The fields as the protocol document's message table writes them."""
        parts = [_fields_doc(self.fields)] if self.fields else []
        if self.forms:
            parts.append(" or ".join(f"({_fields_doc(form)})" for form in self.forms))
        return "; ".join(parts) or "—"

    def _form(self, message: Mapping[str, Any]) -> tuple[Field, ...]:
        for form in self.forms:
            if form[0].name in message:
                return form
        return self.forms[-1] if self.forms else ()


def _to_server(kind: str, *fields: Field, in_lobby: bool = False) -> Message:
    return Message(kind, Direction.TO_SERVER, fields, in_lobby=in_lobby)


def _to_client(kind: str, *fields: Field) -> Message:
    return Message(kind, Direction.TO_CLIENT, fields)


_PARTICIPANT: Final = Field("participant", text(MAX_ID))
_SENTENCE: Final = Field("message", STRING)
_CODE: Final = Field("code", STRING)
_ROSTER: Final = Field("roster", ROSTER)

HELLO: Final = Message(
    "hello",
    Direction.TO_SERVER,
    (Field("version", VERSION),),
    forms=(
        (Field("resume", text(MAX_TOKEN)),),
        (Field("room", text(MAX_ID)), Field("invite", text(MAX_TOKEN))),
    ),
)

ALL: Final[tuple[Message, ...]] = (
    # client -> server
    HELLO,
    _to_server("ping", in_lobby=True),
    _to_server("bye", in_lobby=True),
    _to_server(
        "keys",
        Field("x25519", base64url(32)),
        Field("ed25519", base64url(32)),
        Field("signature", base64url(64)),
    ),
    _to_server("key", Field("to", text(MAX_ID)), Field("payload", text(MAX_KEY_PAYLOAD))),
    _to_server("publish", Field("offer", sdp("offer", MAX_SDP))),
    _to_server("answer", Field("answer", sdp("answer", MAX_SDP)), Field("negotiation", INTEGER)),
    _to_server("admit", _PARTICIPANT),
    _to_server("kick", _PARTICIPANT),
    _to_server("lock"),
    _to_server("unlock"),
    _to_server("end"),
    # server -> client
    _to_client(
        "welcome",
        Field("participant_id", STRING),
        Field("sender_index", SENDER_INDEX),
        Field("name", STRING),
        Field("role", STRING),
        Field("admitted", BOOLEAN),
        Field("room", ROOM_INFO),
        _ROSTER,
        Field("resume_token", STRING),
        # Absent from a server that has none to give (this one always sends the list).
        Field("ice_servers", list_of(ICE_SERVER), optional=True),
    ),
    _to_client("error", _CODE, _SENTENCE),
    _to_client("warning", _CODE, _SENTENCE),
    _to_client("lobby", _SENTENCE),
    _to_client("lobby_waiting", Field("waiting", list_of(WAITING_ENTRY))),
    _to_client("admitted", _ROSTER),
    _to_client("roster", _ROSTER),
    _to_client("room", Field("locked", BOOLEAN)),
    _to_client("ended", Field("reason", STRING)),
    _to_client("kicked", _SENTENCE),
    _to_client("notice", _CODE, Field("participant", STRING), _SENTENCE),
    _to_client("pong"),
    _to_client("key", Field("from", STRING), Field("payload", STRING)),
    _to_client("answer", Field("answer", sdp("answer"))),
    _to_client("offer", Field("negotiation", INTEGER), Field("offer", sdp("offer"))),
    _to_client("media_lost", _SENTENCE),
)

TO_SERVER: Final[Mapping[str, Message]] = {
    m.type: m for m in ALL if m.direction is Direction.TO_SERVER
}
TO_CLIENT: Final[Mapping[str, Message]] = {
    m.type: m for m in ALL if m.direction is Direction.TO_CLIENT
}
# What an admitted connection may send after its hello.
SESSION: Final[Mapping[str, Message]] = {k: m for k, m in TO_SERVER.items() if m is not HELLO}


def to_client(kind: str, **fields: Any) -> str:
    """The text of a server → client message, checked against its definition."""
    return TO_CLIENT[kind].encode(**fields)


def to_server(kind: str, **fields: Any) -> str:
    """The text of a client → server message, checked against its definition."""
    return TO_SERVER[kind].encode(**fields)


def parse(
    raw: str | bytes, accepted: Mapping[str, Message], *, max_bytes: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    """A message of one of the ``accepted`` types with every field as its definition says;
    ProtocolError (``UnknownMessageType`` for a type not accepted) otherwise."""
    message = decode(raw, accepted, max_bytes=max_bytes)
    return accepted[message["type"]].check(message)


__all__ = [
    "ALL",
    "HELLO",
    "NAMED",
    "SESSION",
    "TO_CLIENT",
    "TO_SERVER",
    "Direction",
    "Field",
    "Message",
    "UnsupportedVersion",
    "parse",
    "to_client",
    "to_server",
]
