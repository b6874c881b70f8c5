"""Settings: embedded defaults, then a TOML file, then ``CONCLAVE_<SECTION>_<KEY>`` variables.

Every key is declared once, with its type and check: the core's sections here, the relay's
in ``bot/relay/settings.py``, each chat platform's in its adapter
(``adapters/<platform>/settings.py``). An invalid value raises
``ConfigError`` naming the key. ``config/conclave.example.toml`` documents each key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from adapters.discord.settings import DiscordSettings
from adapters.slack.settings import SlackSettings
from bot.config_fields import (
    Check,
    Section,
    between,
    host_port,
    host_port_check,
    is_loopback,
    secret_of_length,
    spec,
)
from bot.core.policy import MIN_TTL_SECONDS, MeetingPolicy
from bot.durations import format_duration, parse_duration
from bot.errors import ConfigError
from bot.relay.settings import RelaySettings as RelaySettings  # its own module, like the adapters'
from bot.secret import Secret

ENV_PREFIX = "CONCLAVE_"
CONFIG_PATH_ENV = "CONCLAVE_CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_METRICS_TOKEN = 16


def _ttl(v: int) -> str | None:
    return None if v >= MIN_TTL_SECONDS else f"must be at least {format_duration(MIN_TTL_SECONDS)}"


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _public_url(v: str) -> str | None:
    if not v:
        return None
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL, e.g. https://meet.example.com"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return None


def _level(v: str) -> str | None:
    return None if v.lower() in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"


@dataclass(frozen=True)
class ServerSettings(Section):
    host: str = spec("127.0.0.1", check=_non_empty)
    # 0: any free port, chosen when the application is built (links and logs carry it).
    port: int = spec(8080, check=between(0, 65535))
    public_url: str = spec("", check=_public_url)
    # How long an HTTP connection may sit idle, or take to send a request's headers or body
    # (aiohttp's own default keeps an idle connection for an hour).
    idle_timeout: int = spec(30, duration=True, check=between(1, 3600))

    @property
    def base_url(self) -> str:
        """Where people reach this server; links are built on it."""
        return self.public_url.rstrip("/") if self.public_url else self.local_url

    @property
    def local_url(self) -> str:
        """How this host reaches the server itself (local relay workers dial it)."""
        host = self.host
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        if host in ("0.0.0.0", "[::]"):  # noqa: S104 - naming the wildcard, not binding it
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class StorageSettings(Section):
    path: str = spec("./data/conclave.db", check=_non_empty)


@dataclass(frozen=True)
class MeetingSettings(Section):
    default_ttl: int = spec(24 * 3600, duration=True, check=_ttl)
    max_ttl: int = spec(7 * 24 * 3600, duration=True, check=_ttl)
    invite_ttl: int = spec(24 * 3600, duration=True, check=_ttl)
    max_invitees: int = spec(25, check=between(1, 100))
    sweep_interval: int = spec(30, duration=True, check=between(1, 3600))

    def validate(self) -> None:
        if self.default_ttl > self.max_ttl:
            raise ConfigError("meetings.default_ttl", "must not be longer than meetings.max_ttl")

    def policy(self) -> MeetingPolicy:
        return MeetingPolicy(
            default_ttl=self.default_ttl,
            max_ttl=self.max_ttl,
            invite_ttl=self.invite_ttl,
            max_invitees=self.max_invitees,
        )


@dataclass(frozen=True)
class SignalingSettings(Section):
    hello_timeout: int = spec(10, duration=True, check=between(1, 300))
    max_participants: int = spec(50, check=between(2, 500))
    # Sustained messages per second per connection, and the burst allowed above it.
    rate_limit: int = spec(50, check=between(1, 10_000))
    rate_burst: int = spec(200, check=between(1, 100_000))
    # A connection whose socket does not take one message within send_timeout, or whose
    # unsent messages outgrow send_queue_bytes, is not reading: it is cut off.
    send_timeout: int = spec(5, duration=True, check=between(1, 300))
    send_queue_bytes: int = spec(1024 * 1024, check=between(256 * 1024, 256 * 1024 * 1024))
    # Websockets from one address that may be open without having completed their hello.
    unauthenticated_per_address: int = spec(20, check=between(1, 100_000))


@dataclass(frozen=True)
class MetricsSettings(Section):
    # Bearer token a scraper must send; with it (and no listen), /metrics is served on the
    # public listener. Empty: /metrics is not served there at all.
    token: Secret = spec(Secret(""), check=secret_of_length(MIN_METRICS_TOKEN))
    # A separate listener for /metrics only (host:port); loopback unless a token guards it.
    listen: str = spec("", check=host_port_check)

    def validate(self) -> None:
        if self.listen and not self.token and not is_loopback(self.address[0]):
            raise ConfigError(
                "metrics.listen",
                f"{self.listen} is not a loopback address: anyone who reaches it could read "
                "the metrics. Listen on 127.0.0.1 or [::1], or set metrics.token",
            )

    @property
    def address(self) -> tuple[str, int]:
        return host_port(self.listen)

    @property
    def public(self) -> bool:
        """Whether the public listener serves /metrics (behind the token)."""
        return bool(self.token) and not self.listen


@dataclass(frozen=True)
class LoggingSettings(Section):
    level: str = spec("info", check=_level)


@dataclass(frozen=True)
class ConsoleSettings(Section):
    user: str = spec("host", check=_non_empty)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    meetings: MeetingSettings = field(default_factory=MeetingSettings)
    signaling: SignalingSettings = field(default_factory=SignalingSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    source: str = "embedded defaults"


_SECTIONS: dict[str, type[Section]] = {
    f.name: f.type if isinstance(f.type, type) else get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name != "source"
}
_SECTION_NAMES = {cls: name for name, cls in _SECTIONS.items()}


def _env_var(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _coerce(key: str, kind: Any, duration: bool, raw: Any) -> Any:
    got = f"(got {raw!r})" if not isinstance(raw, Secret) else ""
    if duration:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            try:
                return parse_duration(raw)
            except ValueError as exc:
                raise ConfigError(key, str(exc)) from None
        raise ConfigError(key, f"must be a duration such as 30s, 15m or 24h {got}")
    if kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw)
        raise ConfigError(key, f"must be a whole number {got}")
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0", "yes", "no"):
            return raw.lower() in ("true", "1", "yes")
        raise ConfigError(key, f"must be true or false {got}")
    if kind is Secret:
        if isinstance(raw, str):
            return Secret(raw)
        raise ConfigError(key, "must be a string")
    if kind is str:
        if isinstance(raw, str):
            return raw
        raise ConfigError(key, f"must be a string {got}")
    if kind == tuple[str, ...]:
        # A TOML array of strings, or (from the environment) a comma-separated string.
        items = raw.split(",") if isinstance(raw, str) else raw
        if isinstance(items, list | tuple) and all(isinstance(i, str) for i in items):
            return tuple(i.strip() for i in items if i.strip())
        raise ConfigError(key, f"must be a list of strings {got}")
    raise ConfigError(key, f"has an unsupported type {kind!r}")  # pragma: no cover


def _build(section: str, cls: type[Section], values: Mapping[str, Any]) -> Any:
    hints = get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in known:
            raise ConfigError(f"{section}.{name}", f"unknown key; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        key = f"{section}.{name}"
        value = (
            _coerce(key, hints[name], f.metadata["duration"], values[name])
            if name in values
            else f.default
        )
        check: Check | None = f.metadata["check"]
        if check is not None and (problem := check(value)) is not None:
            shown = "" if isinstance(value, Secret) else f" (got {values.get(name, value)!r})"
            raise ConfigError(key, problem + shown)
        kwargs[name] = value
    return cls(**kwargs)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    names = {
        _env_var(section, f.name): (section, f.name)
        for section, cls in _SECTIONS.items()
        for f in dataclasses.fields(cls)
    }
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_PATH_ENV:
            continue
        if var not in names:
            raise ConfigError(var, "is not a Conclave setting (see config/conclave.example.toml)")
        section, key = names[var]
        overrides.setdefault(section, {})[key] = value
    return overrides


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file at ``path`` (if any), then environment overrides."""
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_PATH_ENV):
        path = env[CONFIG_PATH_ENV]
    data: dict[str, Any] = {}
    source = "embedded defaults"
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(p), "config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(p), f"cannot read the config file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(p), f"is not valid TOML: {exc}") from None
        source = str(p)
    for section, value in data.items():
        if section not in _SECTIONS:
            raise ConfigError(section, f"unknown section; known: {', '.join(_SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(section, "must be a table, e.g. [server]")
    overrides = _env_overrides(env)
    sections = {
        name: _build(name, cls, {**data.get(name, {}), **overrides.get(name, {})})
        for name, cls in _SECTIONS.items()
    }
    settings = Settings(**sections, source=source)
    for built in sections.values():
        built.validate()
    return settings


def section_env(section: Section) -> dict[str, str]:
    """``section`` as the ``CONCLAVE_<SECTION>_<KEY>`` variables that load it back unchanged:
    every key, secrets revealed. For a child process's environment only, never for a log."""
    name = _SECTION_NAMES[type(section)]
    return {
        _env_var(name, f.name): _env_text(getattr(section, f.name))
        for f in dataclasses.fields(section)
    }


def _env_text(value: Any) -> str:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)  # how _coerce reads a list from the environment
    return str(value)  # a duration too: a whole number of seconds


def describe(settings: Settings) -> str:
    """The effective settings as TOML, secrets redacted."""
    lines = [f"# effective settings (from {settings.source} and the environment)"]
    for section in _SECTIONS:
        lines.append(f"\n[{section}]")
        obj = getattr(settings, section)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata["duration"]:
                shown = f'"{format_duration(value)}"'
            elif isinstance(value, Secret):
                shown = f'"{value}"' if value else '""'
            elif isinstance(value, bool):
                shown = "true" if value else "false"
            elif isinstance(value, int):
                shown = str(value)
            elif isinstance(value, tuple):
                shown = "[" + ", ".join(f'"{v}"' for v in value) + "]"
            else:
                shown = f'"{value}"'
            lines.append(f"{f.name} = {shown}")
    return "\n".join(lines)
