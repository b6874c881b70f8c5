"""Who is who in a Discord guild: a member look-up turns a mention into a ``UserRef``."""

from __future__ import annotations

from typing import Any

import discord

from bot.commands.grammar import Mention
from bot.commands.handler import Resolver
from bot.core.models import UserRef
from bot.errors import CommandError

PLATFORM = "discord"


def actor(interaction: discord.Interaction) -> UserRef:
    """The person who ran the command; Discord vouches for the id."""
    return UserRef(
        PLATFORM,
        str(interaction.guild_id),
        str(interaction.user.id),
        interaction.user.display_name,
    )


def member_name(member: Any) -> str:
    user = member.get("user") or {}
    return str(member.get("nick") or user.get("global_name") or user.get("username") or "someone")


def resolver(client: discord.Client, guild_id: int) -> Resolver:
    async def resolve(mention: Mention) -> UserRef:
        if not mention.user_id.isdigit():
            raise CommandError(
                f"{mention.label or mention.user_id!r} is not a mention: "
                "type @ and pick the person from Discord's list."
            )
        try:
            # REST, not the member cache: the bot asks for no privileged intent.
            member = await client.http.get_member(guild_id, int(mention.user_id))
        except discord.NotFound:
            raise CommandError(f"<@{mention.user_id}> is not a member of this server.") from None
        if member.get("user", {}).get("bot"):
            raise CommandError(f"{member_name(member)} is a bot; mention people instead.")
        return UserRef(PLATFORM, str(guild_id), mention.user_id, member_name(member))

    return resolve
