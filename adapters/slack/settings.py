"""The ``[slack]`` settings section, with the checks that only Slack needs."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config_fields import Section, http_url, spec
from bot.errors import ConfigError
from bot.secret import Secret

MODES = ("socket", "http")


def _mode(v: str) -> str | None:
    return None if v in MODES else "must be socket or http"


@dataclass(frozen=True)
class SlackSettings(Section):
    mode: str = spec("socket", check=_mode)
    bot_token: Secret = spec(Secret(""))
    app_token: Secret = spec(Secret(""))
    signing_secret: Secret = spec(Secret(""))
    api_url: str = spec("https://slack.com/api/", check=http_url)

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token)

    def validate(self) -> None:
        if self.enabled and self.mode == "socket" and not self.app_token:
            raise ConfigError("slack.app_token", "is required in socket mode (an xapp- token)")
        if self.enabled and self.mode == "http" and not self.signing_secret:
            raise ConfigError("slack.signing_secret", "is required in http mode")
