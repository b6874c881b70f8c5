"""The ``/meet`` app command group: each subcommand turns its options into the shared
grammar's text and hands it to ``run`` (the adapter), which does the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import discord
from discord import app_commands

from adapters.discord import options

Run = Callable[[discord.Interaction, str], Awaitable[None]]
RoomCommand = Callable[[discord.Interaction, str], Coroutine[Any, Any, None]]

ROOM = "The room id (see /meet list)"
# Subcommands whose one option is the room they act on.
ON_ROOM = {
    "lock": "Let nobody new in",
    "unlock": "Let invited people in again",
    "end": "End the meeting and revoke every link",
    "join": "Get your own link, if your DM did not arrive",
}


def _on_room(run: Run, verb: str) -> RoomCommand:
    async def on_room(interaction: discord.Interaction, room: str) -> None:
        await run(interaction, options.on_room(verb, room))

    return on_room


def meet_group(run: Run) -> app_commands.Group:
    meet = app_commands.Group(
        name="meet", description="End-to-end-encrypted meetings", guild_only=True
    )

    @meet.command(description="Start a meeting and DM each invitee a one-time link")
    @app_commands.describe(
        invitees="People to invite, as @mentions",
        topic="What the meeting is about",
        lobby="Admit guests yourself",
        ttl="How long the room lives, e.g. 2h (default 24h)",
        announce="Tell the channel (the announcement never contains a link)",
    )
    async def create(
        interaction: discord.Interaction,
        invitees: str = "",
        topic: str = "",
        lobby: bool = False,
        ttl: str = "",
        announce: bool = False,
    ) -> None:
        await run(interaction, options.create(invitees, topic, lobby, ttl, announce))

    @meet.command(description="Invite more people to a room you host")
    @app_commands.describe(room=ROOM, invitees="People to invite, as @mentions")
    async def invite(interaction: discord.Interaction, room: str, invitees: str) -> None:
        await run(interaction, options.invite(room, invitees))

    for verb, description in ON_ROOM.items():
        meet.command(name=verb, description=description)(
            app_commands.describe(room=ROOM)(_on_room(run, verb))
        )

    @meet.command(description="Remove whoever used someone's link and DM them a new one")
    @app_commands.describe(room=ROOM, invitee="The person whose link was used, as an @mention")
    async def reissue(interaction: discord.Interaction, room: str, invitee: str) -> None:
        await run(interaction, options.on_room_for("reissue", room, invitee))

    @meet.command(name="list", description="The rooms you host")
    async def list_(interaction: discord.Interaction) -> None:
        await run(interaction, "list")

    @meet.command(name="help", description="How to use /meet")
    async def help_(interaction: discord.Interaction) -> None:
        await run(interaction, "help")

    return meet
