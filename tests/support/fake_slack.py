"""A local stand-in for Slack: the Web API methods Conclave calls, ``response_url`` endpoints
and the Socket Mode websocket, recording every call; plus helpers that sign requests and build
slash-command payloads the way Slack does."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.support.fakes import start_local_app

TEAM = "T0CONCLAVE"
BOT_USER = "UBOT"
BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
WAIT = 10.0


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    at: float  # time.monotonic() when the call arrived


@dataclass
class FakeSlack:
    latency: float = 0.0  # seconds added to every Web API and response_url call
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    dm_errors: dict[str, str] = field(default_factory=dict)  # user id -> conversations.open error
    rate_limit_once: set[str] = field(default_factory=set)  # methods that answer 429 once
    calls: list[Call] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # posts to response_url
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)  # socket envelope id -> ack
    refused: list[str] = field(default_factory=list)  # methods called with a wrong token
    port: int = 0
    _runner: web.AppRunner | None = None
    _socket: web.WebSocketResponse | None = None
    _socket_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # --- the directory ---------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, *, bot: bool = False) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM,
            "name": name.lower(),
            "deleted": False,
            "is_bot": bot,
            "profile": {"display_name": name, "real_name": f"{name} Example"},
        }

    @classmethod
    def with_people(cls, latency: float = 0.0) -> FakeSlack:
        fake = cls(latency=latency)
        for user_id, name in (("UHANA", "Hana"), ("UANA", "Ana"), ("UBEN", "Ben"), ("UCAT", "Cat")):
            fake.add_user(user_id, name)
        fake.add_user(BOT_USER, "conclave", bot=True)
        return fake

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/respond/{key}", self._respond)
        app.router.add_get("/socket", self._socket_mode)
        self._runner, self.port = await start_local_app(app)

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, key: str) -> str:
        return f"{self.base_url}/respond/{key}"

    # --- what happened ---------------------------------------------------------------------

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def dms(self) -> dict[str, list[dict[str, Any]]]:
        """chat.postMessage calls by recipient user id (channels are ``D`` + user id)."""
        by_user: dict[str, list[dict[str, Any]]] = {}
        for call in self.called("chat.postMessage"):
            by_user.setdefault(str(call.args["channel"]).removeprefix("D"), []).append(call.args)
        return by_user

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def wait_for(self, condition: Any, timeout: float = WAIT) -> None:
        """Until ``condition()`` holds; AssertionError on timeout (a guard, not a measure)."""

        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(condition)

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError("the fake Slack did not see what the test waited for") from None

    async def wait_responses(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        await self.wait_for(lambda: len(self.responses) >= count, timeout)
        return self.responses

    # --- Web API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update(await request.post())
        await self._record(Call(method, args, time.monotonic()))
        if self.latency:
            await asyncio.sleep(self.latency)
        if method in self.rate_limit_once:
            self.rate_limit_once.discard(method)
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected and args.get("token") != expected:
            self.refused.append(method)
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response(self._answer(method, args))

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "team_id": TEAM, "user_id": BOT_USER, "bot_id": "BBOT"}
        if method == "users.info":
            user = self.users.get(str(args.get("user")))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        if method == "conversations.open":
            user_id = str(args.get("users"))
            if user_id in self.dm_errors:
                return {"ok": False, "error": self.dm_errors[user_id]}
            return {"ok": True, "channel": {"id": "D" + user_id}}
        if method == "chat.postMessage":
            return {"ok": True, "channel": args.get("channel"), "ts": f"{next(self._ids)}.0001"}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        return {"ok": False, "error": "unknown_method"}

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_key"] = request.match_info["key"]
        if self.latency:
            await asyncio.sleep(self.latency)
        async with self._changed:
            self.responses.append(body)
            self._changed.notify_all()
        return web.Response(text="ok")

    # --- Socket Mode -----------------------------------------------------------------------

    async def _socket_mode(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._socket = ws
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {}})
        self._socket_ready.set()
        async for message in ws:
            data = json.loads(message.data)
            async with self._changed:
                self.acks[data["envelope_id"]] = data
                self._changed.notify_all()
        return ws

    async def send_envelope(self, kind: str, payload: dict[str, Any]) -> str:
        """Push an envelope down the Socket Mode connection, as Slack does; its id."""
        await asyncio.wait_for(self._socket_ready.wait(), WAIT)
        assert self._socket is not None
        envelope_id = f"env-{next(self._ids)}"
        await self._socket.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "accepts_response_payload": True,
                "payload": payload,
            }
        )
        return envelope_id


def slash_command(
    fake: FakeSlack, text: str, user_id: str = "UHANA", key: str = "r1"
) -> dict[str, str]:
    """A ``/meet`` slash-command payload, as Slack sends it."""
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "team_domain": "conclave-test",
        "channel_id": "C0GENERAL",
        "channel_name": "general",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": "/meet",
        "text": text,
        "api_app_id": "A0CONCLAVE",
        "response_url": fake.response_url(key),
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
    }


def signed_headers(signing_secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature: HMAC-SHA256 over ``v0:{timestamp}:{body}``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        signing_secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def form(payload: dict[str, str]) -> str:
    return urlencode(payload)
