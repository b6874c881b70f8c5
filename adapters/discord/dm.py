"""Send one invitation as a Discord direct message with a "Join securely" link button, or a
notice for a host as plain text.

A user whose DMs are closed (error 50007) is reported to the host, never retried; 429s are
waited out by discord.py's HTTP client, which honours ``retry_after``.
"""

from __future__ import annotations

import discord

from adapters.delivery import Undeliverable
from bot.commands.handler import Invitation
from bot.commands.notices import Notice

CANNOT_MESSAGE_USER = 50007


def link_view(invitation: Invitation) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(
        discord.ui.Button(
            label="Join securely",
            style=discord.ButtonStyle.link,
            url=invitation.invite.link.reveal(),
        )
    )
    return view


class DiscordDirectMessages:
    def __init__(self, client: discord.Client) -> None:
        self._client = client

    async def send(self, invitation: Invitation) -> None:
        # The link is in the text too: `conclave join LINK` users copy it from there.
        await self._post(invitation.to.user_id, invitation.text(), link_view(invitation))

    async def notify(self, notice: Notice) -> None:
        await self._post(notice.to.user_id, notice.text, None)

    async def _post(self, user_id: str, text: str, view: discord.ui.View | None) -> None:
        try:
            channel = await self._client.create_dm(discord.Object(int(user_id)))
            none = discord.AllowedMentions.none()
            if view is None:
                await channel.send(text, allowed_mentions=none)
            else:
                await channel.send(text, view=view, allowed_mentions=none)
        except discord.HTTPException as err:  # Forbidden included
            if err.code == CANNOT_MESSAGE_USER:
                raise Undeliverable(
                    "they do not accept direct messages from this server's members"
                ) from None
            raise Undeliverable(f"Discord refused the message (error {err.code})") from None
