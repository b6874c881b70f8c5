"""The ``[discord]`` settings section, with the checks that only Discord needs."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config_fields import Section, http_url, spec
from bot.errors import ConfigError
from bot.secret import Secret


@dataclass(frozen=True)
class DiscordSettings(Section):
    token: Secret = spec(Secret(""))
    application_id: str = spec("")
    guild_id: str = spec("")
    api_url: str = spec("https://discord.com/api/v10", check=http_url)

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def validate(self) -> None:
        if self.guild_id and not self.guild_id.isdigit():
            raise ConfigError("discord.guild_id", "must be a numeric guild id")
        if self.application_id and not self.application_id.isdigit():
            raise ConfigError("discord.application_id", "must be a numeric application id")
