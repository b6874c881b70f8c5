"""The signaling schema (bot/signaling/messages.py), the protocol document, and both ends.

The document's message table is read back and must be the module's definitions, message by
message and field by field, and every message the document's section 6 names anywhere must
be defined. Both ends dispatch from a table that must cover the schema exactly. A hostile
server that sends malformed messages gets the Python client to leave saying so, never to
crash on a missing key.
"""

from __future__ import annotations

import asyncio
import json
import re
import typing
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.client.session import ClientSession
from bot.config import SignalingSettings
from bot.core.events import Event
from bot.core.links import parse_link
from bot.core.service import MeetingService
from bot.errors import ProtocolError, UnknownMessageType
from bot.signaling.hub import Hub
from bot.signaling.messages import (
    ALL,
    NAMED,
    SESSION,
    TO_CLIENT,
    TO_SERVER,
    Direction,
    Message,
    UnsupportedVersion,
    parse,
    to_client,
    to_server,
)
from tests.support.fakes import start_local_app

PROTOCOL = Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md"
DIRECTIONS = {
    "client → server": Direction.TO_SERVER,
    "host → server": Direction.TO_SERVER,
    "server → client": Direction.TO_CLIENT,
    "server → host": Direction.TO_CLIENT,
}


def section_6() -> str:
    text = PROTOCOL.read_text()
    start = text.index("## 6. Signaling")
    return text[start : text.index("\n## 7.", start)]


def subsection(title: str) -> str:
    text = section_6()
    start = text.index(f"### {title}\n")
    end = text.find("\n### ", start + 1)
    return text[start : None if end < 0 else end]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


# --- the document and the module -------------------------------------------------------------


def test_the_documents_message_table_is_the_schema() -> None:
    shown = {
        (DIRECTIONS[direction], kind.strip("`")): fields
        for direction, kind, fields in table_rows(subsection("Messages"), "| direction | type |")
    }
    defined = {(m.direction, m.type): m.doc for m in ALL}
    assert sorted(set(defined) - set(shown), key=str) == [], "defined but not in the document"
    assert sorted(set(shown) - set(defined), key=str) == [], "in the document but not defined"
    for key, fields in defined.items():
        assert shown[key] == fields, f"{key[1]} ({key[0].value}) differs"
    assert len(shown) == len(table_rows(subsection("Messages"), "| direction | type |"))


def test_the_documents_objects_are_the_schemas() -> None:
    shown = dict(table_rows(subsection("Messages"), "| object | fields |"))
    assert shown == {n.doc: n.definition for n in NAMED}


def test_every_message_section_6_names_is_defined() -> None:
    named = set(re.findall(r'"type": "([a-z_]+)"', section_6()))
    named |= set(re.findall(r'\\\| "([a-z_]+)"', section_6()))  # {"type": "admit" \| "kick"}
    assert named - {m.type for m in ALL} == set()
    # The in-the-room table says which way each goes; the schema must agree.
    for direction, message, _ in table_rows(subsection("In the room"), "| direction |"):
        # Each message's own type opens its code span (a session description inside is not).
        kinds = re.findall(r'`\{"type": "([a-z_]+)"|\\\| "([a-z_]+)"', message)
        assert kinds, message
        table = TO_SERVER if DIRECTIONS[direction] is Direction.TO_SERVER else TO_CLIENT
        for kind in ("".join(k) for k in kinds):
            assert kind in table, f"{kind} ({direction}) is not defined that way"


def test_every_message_the_schema_defines_is_in_the_messages_table() -> None:
    # The reverse, stated on its own: nothing defined goes undocumented.
    text = subsection("Messages")
    for m in ALL:
        assert f"| {m.direction.value} | `{m.type}` |" in text


# --- both ends dispatch from a table covering the schema --------------------------------------


def test_the_hub_handles_exactly_what_a_client_may_send(service: MeetingService) -> None:
    hub = Hub(service, SignalingSettings())
    assert set(hub.message_handlers) | {"bye"} == set(SESSION)
    assert set(SESSION) | {"hello"} == set(TO_SERVER)
    assert set(hub.event_handlers) == set(typing.get_args(Event))


def test_the_client_handles_exactly_what_the_hub_may_send() -> None:
    link = parse_link(f"http://127.0.0.1:1/j/room#inv.{'s' * 43}")
    session = ClientSession(link, lambda line: None)
    assert set(session.handlers) == set(TO_CLIENT)


# --- validation --------------------------------------------------------------------------------


def test_a_hellos_version_is_checked_before_its_credentials() -> None:
    with pytest.raises(UnsupportedVersion):
        parse('{"type": "hello", "version": 1, "room": 7}', TO_SERVER)
    with pytest.raises(UnsupportedVersion):
        parse('{"type": "hello", "version": true, "resume": "p.x"}', TO_SERVER)
    with pytest.raises(ProtocolError, match="'room'"):
        parse('{"type": "hello", "version": 2, "room": 7, "invite": "i.s"}', TO_SERVER)
    # A resume needs no room; a hello that does not resume needs both room and invite.
    assert parse('{"type": "hello", "version": 2, "resume": "p.x"}', TO_SERVER)["resume"] == "p.x"
    with pytest.raises(ProtocolError, match="'invite'"):
        parse('{"type": "hello", "version": 2, "room": "r"}', TO_SERVER)


SDP_ANSWER = {"type": "answer", "sdp": "v=0"}
ANA = {"participant_id": "p1", "name": "Ana", "role": "guest"}
MALFORMED: dict[str, tuple[dict[str, Any], Mapping[str, Message]]] = {
    "empty_payload": ({"type": "key", "to": "p1", "payload": ""}, TO_SERVER),
    "no_payload": ({"type": "key", "to": "p1"}, TO_SERVER),
    "negotiation_text": ({"type": "answer", "answer": SDP_ANSWER, "negotiation": "1"}, TO_SERVER),
    "negotiation_bool": ({"type": "answer", "answer": SDP_ANSWER, "negotiation": True}, TO_SERVER),
    "padded_key": (
        {"type": "keys", "x25519": "A" * 42 + "=", "ed25519": "A" * 43, "signature": "A" * 86},
        TO_SERVER,
    ),
    "entry_without_index": ({"type": "roster", "roster": [ANA]}, TO_CLIENT),
    "index_zero": ({"type": "roster", "roster": [{**ANA, "sender_index": 0}]}, TO_CLIENT),
    "roster_not_a_list": ({"type": "roster", "roster": {"p1": "Ana"}}, TO_CLIENT),
    "waiting_without_name": (
        {"type": "lobby_waiting", "waiting": [{"participant_id": "p1"}]},
        TO_CLIENT,
    ),
    "offer_of_answer": ({"type": "offer", "negotiation": 1, "offer": SDP_ANSWER}, TO_CLIENT),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_field_missing_or_of_another_type_is_a_protocol_error(case: str) -> None:
    message, table = MALFORMED[case]
    with pytest.raises(ProtocolError, match="Field '"):
        parse(json.dumps(message), table)


def test_a_type_is_known_only_in_its_direction() -> None:
    with pytest.raises(UnknownMessageType):
        parse('{"type": "welcome"}', TO_SERVER)
    with pytest.raises(UnknownMessageType):
        parse('{"type": "publish"}', TO_CLIENT)
    # "key" goes both ways, with other fields each way.
    assert parse('{"type": "key", "from": "p1", "payload": "x"}', TO_CLIENT)["from"] == "p1"
    with pytest.raises(ProtocolError, match="'to'"):
        parse('{"type": "key", "from": "p1", "payload": "x"}', TO_SERVER)


def test_what_either_end_builds_is_checked_too() -> None:
    assert to_client("room", locked=True) == '{"type":"room","locked":true}'
    assert to_server("kick", participant="p1") == '{"type":"kick","participant":"p1"}'
    with pytest.raises(ProtocolError, match="'locked'"):
        to_client("room", locked="yes")
    with pytest.raises(ProtocolError, match="'participant'"):
        to_server("admit")


# --- a hostile server ---------------------------------------------------------------------------

WELCOME: dict[str, Any] = {
    "type": "welcome",
    "participant_id": "p1",
    "sender_index": 1,
    "name": "Ana",
    "role": "guest",
    "admitted": False,  # in the lobby: the client announces no keys, needs no relay
    "room": {"id": "room", "topic": "Sync", "state": "open", "lobby": True},
    "roster": [],
    "resume_token": "p1." + "r" * 43,
}
ENTRY = {"participant_id": "p1", "name": "Ana", "role": "guest", "sender_index": 1}
HOSTILE: dict[str, dict[str, Any]] = {
    "welcome_without_room": {k: v for k, v in WELCOME.items() if k != "room"},
    "entry_without_index": {
        "type": "admitted",
        "roster": [{k: v for k, v in ENTRY.items() if k != "sender_index"}],
    },
    "roster_not_a_list": {"type": "roster", "roster": "Ana"},
    "waiting_without_name": {"type": "lobby_waiting", "waiting": [{"participant_id": "p2"}]},
    "notice_without_message": {"type": "notice", "code": "link_reused", "participant": "p2"},
    "unknown_type": {"type": "surprise"},
}


@asynccontextmanager
async def hostile_server(then: dict[str, Any]) -> AsyncIterator[str]:
    """Answers a hello with a welcome (unless ``then`` is one), then sends ``then``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        if then["type"] != "welcome":
            await ws.send_json(WELCOME)
        await ws.send_json(then)
        await ws.receive()  # until the client goes
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner, port = await start_local_app(app)
    try:
        yield f"http://127.0.0.1:{port}/j/room#inv.{'s' * 43}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_malformed_message_makes_the_client_leave_saying_so(case: str) -> None:
    lines: list[str] = []
    async with hostile_server(HOSTILE[case]) as link:
        session = ClientSession(parse_link(link), lines.append)
        with pytest.raises(ProtocolError) as raised:
            await asyncio.wait_for(session.run(None), 10)
    assert str(raised.value).startswith("The server sent a malformed message: ")
    assert type(raised.value) is ProtocolError  # not a KeyError or TypeError in disguise
    assert not [line for line in lines if line.startswith("notice:")]


async def test_a_well_formed_lobby_is_shown(http: aiohttp.ClientSession) -> None:
    """The control for the cases above: the same server, well-formed, is simply shown."""
    waiting = {"type": "lobby_waiting", "waiting": [{"participant_id": "p2", "name": "Ben"}]}
    lines: list[str] = []
    async with hostile_server(waiting) as link:
        session = ClientSession(parse_link(link), lines.append)
        task = asyncio.ensure_future(session.run(None))
        for _ in range(200):
            if "waiting in the lobby: Ben (p2)" in lines:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert lines[:2] == [
        'joined "Sync" as Ana (guest); participant p1',
        "waiting in the lobby: Ben (p2)",
    ]
