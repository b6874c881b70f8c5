"""One signaling-only participant of the soak: ``docs/PROTOCOL.md`` section 6 over a raw
websocket, with the real end-to-end key handling (``bot.client.keyring.Keyring``: a signed key
announcement, sender keys sealed to each peer, rotation on every leave).

Every message from the hub is checked against its definition (``bot.signaling.messages``). A
message the soak did not provoke (a warning, a notice, an error it did not ask for) and a
connection that ends without the soak having ended it are errors in the tally.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import aiohttp

from bench.soak_tally import Tally
from bot.client.keyring import Keyring
from bot.core.links import parse_link
from bot.e2ee.errors import KeysTampered
from bot.e2ee.media import Codec
from bot.errors import ProtocolError
from bot.signaling.envelope import PROTOCOL_VERSION, WIRE_LIMIT
from bot.signaling.messages import TO_CLIENT, parse, to_server

ANSWER_S = 20.0  # a welcome or a close on a busy machine
PROBE = b"soak probe frame"
THROTTLE_WAITS = 5


class Refused(Exception):
    """The hub answered a hello with ``error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Peer:
    def __init__(self, label: str, ws_url: str, http: aiohttp.ClientSession, tally: Tally):
        self.label = label
        self._ws_url = ws_url
        self._http = http
        self._tally = tally
        self._token: str | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._leaving = False
        self._expected: str | None = None  # how the hub is about to end the connection
        self.participant_id = ""
        self.sender_index = 0
        self.keyring: Keyring | None = None
        self.roster: frozenset[str] = frozenset()
        self.gone: str | None = "not connected"  # why the connection ended; None while open

    # --- connecting ------------------------------------------------------------------------

    async def enter(self, link: str) -> None:
        """Redeem the invite in ``link``: a new participant with new keys."""
        parsed = parse_link(link)
        welcome = await self._hello({"room": parsed.room_id, "invite": parsed.credential.reveal()})
        self.participant_id = welcome["participant_id"]
        self.sender_index = welcome["sender_index"]
        self.keyring = Keyring(welcome["room"]["id"], self.participant_id, self.sender_index)
        await self._start(welcome)

    async def resume(self) -> None:
        """Come back with the resume token, as a client whose connection dropped does."""
        assert self.keyring is not None and self._token is not None
        for _ in range(THROTTLE_WAITS):
            try:
                welcome = await self._hello({"resume": self._token})
            except Refused as refused:
                if refused.code != "resume_too_soon":
                    raise
                # Documented: the token is still good; wait and try again.
                self._tally.note("resume_too_soon (waited and resumed)")
                await asyncio.sleep(2.0)
                continue
            self.keyring.rejoin()
            await self._start(welcome)
            return
        raise Refused("resume_too_soon", f"still throttled after {THROTTLE_WAITS} waits")

    async def refused_with(self, hello: dict[str, str]) -> str:
        """The code a hello is refused with; "" (and the connection left again) if it was let
        in."""
        try:
            await self._hello(hello, keep=False)
        except Refused as refused:
            return refused.code
        return ""

    async def _hello(self, hello: dict[str, str], *, keep: bool = True) -> dict[str, Any]:
        ws = await self._http.ws_connect(self._ws_url, max_msg_size=WIRE_LIMIT)
        try:
            await ws.send_str(to_server("hello", version=PROTOCOL_VERSION, **hello))
            msg = await ws.receive(ANSWER_S)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise Refused("closed", f"the hub closed without an answer ({msg.type!r})")
            first = parse(msg.data, TO_CLIENT, max_bytes=WIRE_LIMIT)
            if first["type"] == "error":
                raise Refused(first["code"], first["message"])
            if first["type"] != "welcome":
                raise ProtocolError(f"expected welcome, got {first['type']}")
        except BaseException:
            await ws.close()
            raise
        if not keep:
            await ws.send_str(to_server("bye"))
            await ws.close()
            return first
        self._ws = ws
        self._token = first["resume_token"]
        return first

    async def _start(self, welcome: dict[str, Any]) -> None:
        assert self.keyring is not None and self._ws is not None
        if not welcome["admitted"]:
            self._tally.error(f"not admitted: {self.label} was put in a lobby")
        self.gone = None
        self._leaving = False
        self._expected = None
        await self._send("keys", **self.keyring.announcement())
        await self._on_roster(welcome["roster"])
        self._reader = asyncio.create_task(self._read(self._ws))

    # --- leaving ---------------------------------------------------------------------------

    async def leave(self) -> None:
        """Say ``bye``; the hub closes the connection."""
        self._leaving = True
        await self._send("bye")
        await self._closed()

    async def drop(self) -> None:
        """Lose the connection: the TCP connection goes, no close frame, no bye."""
        self._leaving = True
        ws = self._ws
        sock = None if ws is None else ws.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        await self._closed()

    async def _closed(self) -> None:
        """Until the reader has seen the connection end."""
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), ANSWER_S)
            except TimeoutError:
                self._tally.error(f"no close: {self.label}'s connection did not end")
                self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()

    def expect(self, end: str) -> None:
        """The soak is about to have the hub end this connection with ``end`` (``kicked``,
        ``ended``): not an error when it comes."""
        self._expected = end

    async def closed(self) -> str:
        """Wait for the connection to end (the hub ended or kicked it); why it ended."""
        await self._closed()
        return self.gone or "open"

    # --- messages --------------------------------------------------------------------------

    @property
    def resume_token(self) -> str:
        assert self._token is not None
        return self._token

    async def send(self, kind: str, **fields: Any) -> None:
        """A host control (``kick``, ``end``), as a person would press it."""
        await self._send(kind, **fields)

    async def _send(self, kind: str, **fields: Any) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_str(to_server(kind, **fields))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        why = "dropped"
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                ended = await self._on_text(msg.data)
                if ended is not None:
                    why = ended
        except Exception as exc:
            self._tally.error(f"client exception: {self.label}: {exc!r}")
        finally:
            self.gone = why
            self._ws = None
            if not self._leaving and why != self._expected:
                code = ws.close_code
                self._tally.error(f"connection lost: {self.label}: {why} (close code {code})")

    async def _on_text(self, text: str) -> str | None:
        """Handle one message; why the connection is ending, if this message says."""
        try:
            message = parse(text, TO_CLIENT, max_bytes=WIRE_LIMIT)
        except ProtocolError as err:
            self._tally.error(f"malformed message: {self.label}: {err}")
            return None
        kind = str(message["type"])
        if kind == "roster":
            await self._on_roster(message["roster"])
        elif kind == "key":
            assert self.keyring is not None
            self.keyring.on_key(message["from"], message["payload"])
        elif kind == "pong":
            pass
        elif kind == "lobby_waiting" and not message["waiting"]:
            # A host is told who waits when it arrives, even in a room without a lobby.
            self._tally.note("empty lobby_waiting to a host")
        elif kind in ("kicked", "ended"):
            return kind
        elif kind == "error":
            return f"error {message['code']}"
        else:
            detail = message.get("code") or message.get("message") or ""
            self._tally.error(f"unexpected {kind}: {self.label}: {detail}")
        return None

    async def _on_roster(self, roster: list[dict[str, Any]]) -> None:
        assert self.keyring is not None
        self.roster = frozenset(entry["participant_id"] for entry in roster)
        try:
            outgoing = self.keyring.on_roster(roster)
        except KeysTampered as err:
            self._tally.error(f"keys tampered: {self.label}: {err}")
            return
        for out in outgoing:
            await self._send("key", to=out.to, payload=out.payload)

    # --- the end-to-end check --------------------------------------------------------------

    def probe(self) -> bytes:
        """A frame sealed with this participant's sending key now."""
        assert self.keyring is not None
        return self.keyring.protect(Codec.OPUS, PROBE)

    def opens(self, sender: Peer, frame: bytes) -> bool:
        """Whether this participant can decrypt ``sender``'s ``frame``."""
        assert self.keyring is not None
        return self.keyring.unprotect(Codec.OPUS, frame, sender.sender_index) == PROBE

    def key_pending(self) -> bool:
        """Whether a new sending key still waits for its activation delay."""
        assert self.keyring is not None
        self.keyring.tick()
        keys = self.keyring.sender_keys
        return keys.latest_key != keys.current_key
