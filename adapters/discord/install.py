"""The OAuth2 URL that adds the bot to a server, with exactly the scopes and permissions used.

Scopes: ``bot`` (to be in the server and send DMs) and ``applications.commands`` (``/meet``).
Permissions: Send Messages only, for the ``announce`` post; replies are interaction responses
and DMs need no server permission.
"""

from __future__ import annotations

import discord

SCOPES = ("bot", "applications.commands")
PERMISSIONS = discord.Permissions(send_messages=True)


def install_url(application_id: int) -> str:
    return discord.utils.oauth_url(application_id, permissions=PERMISSIONS, scopes=SCOPES)
