"""What the composition root needs from a chat platform adapter."""

from __future__ import annotations

from typing import Protocol


class PlatformAdapter(Protocol):
    name: str

    @property
    def bot_user_id(self) -> str | None:
        """The bot's own user id on the platform, once known (a command inviting it is refused)."""

    async def start(self) -> None:
        """Connect to the platform (after the web server listens)."""

    async def stop(self) -> None:
        """Disconnect; called once at shutdown, also after a failed start."""
