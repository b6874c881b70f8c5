"""Who is who in a Slack workspace: ``users.info`` turns a user id into a ``UserRef``."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands.grammar import Mention
from bot.commands.handler import Resolver
from bot.core.models import UserRef
from bot.errors import CommandError

log = logging.getLogger(__name__)

PLATFORM = "slack"


def display_name(user: dict[str, Any]) -> str:
    profile = user.get("profile") or {}
    name = profile.get("display_name") or profile.get("real_name") or user.get("name")
    return str(name or user.get("id", "someone"))


class SlackPeople:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def _info(self, user_id: str) -> dict[str, Any] | None:
        try:
            response = await self._client.users_info(user=user_id)
        except SlackApiError as err:
            if err.response.get("error") in ("user_not_found", "user_not_visible"):
                return None
            raise
        user: dict[str, Any] = response["user"]
        return user

    async def actor(self, team_id: str, user_id: str, fallback_name: str) -> UserRef:
        """The person who typed the command (Slack vouches for the id; the name is cosmetic,
        so a failed look-up falls back to the name the command carried)."""
        try:
            user = await self._info(user_id)
        except SlackApiError as err:
            log.warning("users.info failed for the caller: %s", err.response.get("error"))
            user = None
        name = display_name(user) if user is not None else fallback_name or user_id
        return UserRef(PLATFORM, team_id, user_id, name)

    def resolver(self, team_id: str) -> Resolver:
        async def resolve(mention: Mention) -> UserRef:
            user = await self._info(mention.user_id)
            shown = f"<@{mention.user_id}>"
            if user is None or user.get("deleted"):
                raise CommandError(f"{shown} is not an active member of this workspace.")
            if user.get("is_bot") or user.get("id") == "USLACKBOT":
                raise CommandError(f"{display_name(user)} is a bot; mention people instead.")
            return UserRef(PLATFORM, team_id, mention.user_id, display_name(user))

        return resolve
