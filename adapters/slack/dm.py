"""Send one invitation, or a notice for a host, as a Slack direct message:
``conversations.open``, then ``chat.postMessage``. A refusal becomes ``Undeliverable`` with a
reason for the host."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.delivery import Undeliverable
from adapters.slack.message import escape, invitation_message
from bot.commands.handler import Invitation
from bot.commands.notices import Notice

REASONS = {
    "cannot_dm_bot": "that is a bot account",
    "user_not_found": "they are not in this workspace",
    "user_not_visible": "the app cannot see them",
    "user_disabled": "their account is deactivated",
    "account_inactive": "their account is deactivated",
    "restricted_action": "this workspace does not let the app message them",
    "messages_tab_disabled": "their direct messages with apps are turned off",
    "is_archived": "the conversation is archived",
    "ratelimited": "Slack is rate limiting the app; try again in a minute",
}


class SlackDirectMessages:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def send(self, invitation: Invitation) -> None:
        await self._post(invitation.to.user_id, invitation_message(invitation))

    async def notify(self, notice: Notice) -> None:
        await self._post(notice.to.user_id, {"text": escape(notice.text)})

    async def _post(self, user_id: str, message: dict[str, Any]) -> None:
        try:
            opened = await self._client.conversations_open(users=user_id)
            channel = opened["channel"]["id"]
            await self._client.chat_postMessage(channel=channel, **message)
        except SlackApiError as err:
            code = str(err.response.get("error", "unknown_error"))
            raise Undeliverable(REASONS.get(code, f"Slack refused the message ({code})")) from None
