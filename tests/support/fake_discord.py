"""A local stand-in for Discord: the REST routes Conclave calls (under ``/api/v10``) and a
minimal gateway websocket that says HELLO, answers IDENTIFY with READY and then pushes the
``INTERACTION_CREATE`` events a test asks for, all recorded."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.fakes import start_local_app

APP_ID = "900000000000000001"
BOT_ID = APP_ID  # a bot user's id is its application's id
GUILD_ID = "800000000000000001"
CHANNEL_ID = "700000000000000001"
TOKEN = "test-discord-bot-token"
DM_BASE = 400000000000000000
WAIT = 10.0
EPOCH = "2026-01-01T00:00:00.000000+00:00"


def dm_channel(user_id: str) -> str:
    """The id of the DM channel with a user (the fake derives it from the user's id)."""
    return str(DM_BASE + int(user_id))


def user_payload(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": name.lower(),
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any
    at: float  # time.monotonic() when it arrived


@dataclass
class FakeDiscord:
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> member
    closed_dms: set[str] = field(default_factory=set)  # users answering 50007
    rate_limit_once: set[str] = field(default_factory=set)  # users whose first DM gets a 429
    retry_after: float = 0.3
    latency: float = 0.0
    requests: list[Request] = field(default_factory=list)
    delivered: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # user id -> DMs
    port: int = 0
    _runner: web.AppRunner | None = None
    _gateway: web.WebSocketResponse | None = None
    _identified: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_member(self, user_id: str, name: str, *, nick: str | None = None) -> None:
        self.members[user_id] = {
            "user": user_payload(user_id, name),
            "nick": nick,
            "roles": [],
            "joined_at": EPOCH,
            "deaf": False,
            "mute": False,
            "flags": 0,
        }

    @classmethod
    def with_people(cls) -> FakeDiscord:
        fake = cls()
        fake.add_member("100", "Hana")
        fake.add_member("101", "Ana", nick="Ana B.")
        fake.add_member("102", "Ben")
        fake.add_member("103", "Cat")
        fake.members[BOT_ID] = {
            **fake.members["100"],
            "user": user_payload(BOT_ID, "conclave", bot=True),
        }
        return fake

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway_socket)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner, self.port = await start_local_app(app)

    async def stop(self) -> None:
        if self._gateway is not None:
            await self._gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- what happened ---------------------------------------------------------------------

    def matching(self, method: str, prefix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def callbacks(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/callback")]

    def followups(self) -> list[Request]:
        return self.matching("POST", f"/webhooks/{APP_ID}/")

    def dms(self) -> dict[str, list[dict[str, Any]]]:
        """Messages accepted into a DM channel, by recipient user id."""
        return self.delivered

    async def wait_for(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(condition)

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError("the fake Discord did not see what the test waited for") from None

    async def wait_followups(self, count: int) -> list[Request]:
        await self.wait_for(lambda: len(self.followups()) >= count)
        return self.followups()

    # --- REST ------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body: Any = None
        if request.content_type == "application/json":
            body = await request.json()
        elif request.content_type.startswith("multipart/"):
            form = await request.post()
            body = json.loads(str(form["payload_json"]))
        async with self._changed:
            self.requests.append(Request(request.method, path, body, time.monotonic()))
            self._changed.notify_all()
        if self.latency:
            await asyncio.sleep(self.latency)
        # Interaction callbacks and followups authenticate by the token in their path.
        authorized = request.headers.get("Authorization") == f"Bot {TOKEN}"
        if not authorized and not path.startswith(("/interactions/", "/webhooks/")):
            return _json({"message": "401: Unauthorized", "code": 0}, 401, {})
        status, payload = self._answer(request.method, path, body)
        headers = {"Via": "1.1 google"}  # discord.py honours a 429 only from behind Discord's proxy
        if status == 204:
            return web.Response(status=204, headers=headers)
        return _json(payload, status, headers)

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if (method, path) == ("GET", "/users/@me"):
            return 200, user_payload(BOT_ID, "conclave", bot=True)
        if (method, path) == ("GET", "/oauth2/applications/@me"):
            return 200, {
                "id": APP_ID,
                "name": "Conclave",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": user_payload("100", "Hana"),
                "verify_key": "00",
                "team": None,
                "flags": 0,
            }
        if method == "PUT" and parts[0] == "applications" and parts[-1] == "commands":
            return 200, [
                {**c, "id": str(900 + i), "application_id": APP_ID, "version": "1"}
                for i, c in enumerate(body)
            ]
        if method == "GET" and parts[0] == "guilds" and parts[2] == "members":
            member = self.members.get(parts[3]) if parts[1] == GUILD_ID else None
            return (200, member) if member else _payload(404, 10007, "Unknown Member")
        if (method, path) == ("POST", "/users/@me/channels"):
            user_id = str(body["recipient_id"])
            recipient = self.members.get(user_id, {"user": user_payload(user_id, "x")})["user"]
            return 200, {"id": dm_channel(user_id), "type": 1, "recipients": [recipient]}
        if method == "POST" and parts[0] == "channels" and parts[2] == "messages":
            user_id = str(int(parts[1]) - DM_BASE)
            if user_id in self.closed_dms:
                return _payload(403, 50007, "Cannot send messages to this user")
            if user_id in self.rate_limit_once:
                self.rate_limit_once.discard(user_id)
                return 429, {
                    "message": "rate limited",
                    "retry_after": self.retry_after,
                    "global": False,
                }
            self.delivered.setdefault(user_id, []).append(body)
            return 200, self._message(parts[1], body)
        if method == "POST" and parts[0] == "interactions":
            return 200, {
                "interaction": {
                    "id": parts[1],
                    "type": 2,
                    "response_message_loading": body["type"] == 5,
                    "response_message_ephemeral": bool(body.get("data", {}).get("flags", 0) & 64),
                },
                "resource": {"type": body["type"]},
            }
        if method == "POST" and parts[0] == "webhooks":
            return 200, self._message(CHANNEL_ID, body)
        return _payload(404, 0, f"the fake does not know {method} {path}")

    def _message(self, channel_id: str, body: Any) -> dict[str, Any]:
        return {
            "id": str(600000000000000000 + next(self._ids)),
            "channel_id": channel_id,
            "type": 0,
            "content": body.get("content") or "",
            "author": user_payload(BOT_ID, "conclave", bot=True),
            "timestamp": EPOCH,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "flags": body.get("flags", 0),
            "components": [],
        }

    # --- gateway ---------------------------------------------------------------------------

    async def _gateway_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._gateway = ws
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 45000}})
        async for message in ws:
            data = json.loads(message.data)
            if data["op"] == 1:
                await ws.send_json({"op": 11})
            elif data["op"] == 2:
                await ws.send_json(self._ready())
                self._identified.set()
        return ws

    def _ready(self) -> dict[str, Any]:
        return {
            "op": 0,
            "t": "READY",
            "s": next(self._seq),
            "d": {
                "v": 10,
                "user": user_payload(BOT_ID, "conclave", bot=True),
                "guilds": [],
                "session_id": "fake-session",
                "resume_gateway_url": self.gateway_url,
                "application": {"id": APP_ID, "flags": 0},
            },
        }

    async def interact(self, payload: Mapping[str, Any]) -> None:
        """Deliver an ``INTERACTION_CREATE`` over the gateway, as Discord does."""
        await asyncio.wait_for(self._identified.wait(), WAIT)
        assert self._gateway is not None
        await self._gateway.send_json(
            {"op": 0, "t": "INTERACTION_CREATE", "s": next(self._seq), "d": dict(payload)}
        )


def _json(payload: Any, status: int, headers: dict[str, str]) -> web.Response:
    # Exactly "application/json", without a charset: discord.py compares the header verbatim.
    return web.Response(
        body=json.dumps(payload).encode(),
        status=status,
        headers={**headers, "Content-Type": "application/json"},
    )


def _payload(status: int, code: int, message: str) -> tuple[int, Any]:
    return status, {"message": message, "code": code}


_interaction_ids = itertools.count(500000000000000001)


def meet(
    subcommand: str,
    options: Mapping[str, str | bool] | None = None,
    *,
    user_id: str = "100",
    name: str = "Hana",
) -> dict[str, Any]:
    """An ``INTERACTION_CREATE`` payload for ``/meet SUBCOMMAND option:value ...`` in a guild
    channel, shaped as Discord sends it (API v10)."""
    kinds = {str: 3, bool: 5}
    return {
        "id": str(next(_interaction_ids)),
        "application_id": APP_ID,
        "type": 2,
        "token": f"interaction-token-{next(_interaction_ids)}",
        "version": 1,
        "guild_id": GUILD_ID,
        "channel_id": CHANNEL_ID,
        "channel": {
            "id": CHANNEL_ID,
            "type": 0,
            "guild_id": GUILD_ID,
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
            "permissions": "2048",
        },
        "member": {
            "user": user_payload(user_id, name),
            "nick": None,
            "roles": [],
            "joined_at": EPOCH,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": "2048",
        },
        "app_permissions": "2048",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID},
        "context": 0,
        "attachment_size_limit": 10485760,
        "data": {
            "id": "900",
            "name": "meet",
            "type": 1,
            "guild_id": GUILD_ID,
            "options": [
                {
                    "name": subcommand,
                    "type": 1,
                    "options": [
                        {"name": k, "type": kinds[type(v)], "value": v}
                        for k, v in (options or {}).items()
                    ],
                }
            ],
        },
    }
