"""How a settings section declares its keys, for ``bot.config`` and the adapters' own sections.

A section is a frozen dataclass of ``spec`` fields, each with its default, whether it is a
duration, and a check of its value alone; checks that read several keys go in ``validate``.
``bot.config`` reads, coerces, checks and prints every section the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import Field, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from bot.secret import Secret

Check = Callable[[Any], str | None]


def spec(default: Any, *, duration: bool = False, check: Check | None = None) -> Any:
    return field(default=default, metadata={"duration": duration, "check": check})


def between(low: int, high: int) -> Check:
    return lambda v: None if low <= v <= high else f"must be from {low} to {high}"


def secret_of_length(minimum: int) -> Check:
    """Unset (empty), or at least ``minimum`` characters."""

    def check(v: Secret) -> str | None:
        if v and len(v.reveal()) < minimum:
            return f"must be at least {minimum} characters (e.g. openssl rand -hex 32)"
        return None

    return check


def http_url(v: str) -> str | None:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL"
    return None


def host_port(v: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for an IPv6 address) as its parts; ValueError if not."""
    parts = urlsplit(f"//{v}")
    port = parts.port  # ValueError if not a number from 0 to 65535
    if not parts.hostname or port is None or parts.username or parts.path or parts.query:
        raise ValueError(v)
    return parts.hostname, port


def host_port_check(v: str) -> str | None:
    if not v:
        return None
    try:
        host_port(v)
    except ValueError:
        return "must be host:port, e.g. 127.0.0.1:9464 or [::1]:9464"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Section:
    """The base of every settings section."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # each section is a dataclass

    def validate(self) -> None:
        """Checks across keys, run once every section is built: raise ``ConfigError`` naming
        the key to fix."""
