"""The fuzz targets: each takes one input (bytes) and hands it to a parser that reads bytes or
text from outside, exactly as the application does.

A target returns normally when the parser accepts the input or refuses it with its documented
error; anything else escapes and is a finding: another exception (a crash, which in production
is a traceback and a dropped connection or a 500) or a ``Broken`` invariant (the parser accepted
something it must not, or two readings of one input disagree).

Targets are grouped in modules by what they import, and looked up by name here without importing
them, so running one target loads only its own part of the application.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final

Target = Callable[[bytes], None]

# target name -> (module under tests.fuzz.targets, documented error the parser may raise)
TARGETS: Final[dict[str, tuple[str, str]]] = {
    "sframe_header": ("e2ee", "SFrameError"),
    "sframe_decrypt": ("e2ee", "SFrameError"),
    "media_frame": ("e2ee", "SFrameError"),
    "key_transport": ("e2ee", "KeyTransportError"),
    "key_transport_signed": ("e2ee", "KeyTransportError"),
    "roster": ("e2ee", "ProtocolError, E2EEError"),
    "vp8_descriptor": ("relay", "none: returns a bool"),
    "relay_control": ("relay", "ProtocolError"),
    "relay_ticket": ("relay", "BadTicket"),
    "signaling_envelope": ("signaling", "ProtocolError"),
    "signaling_to_server": ("signaling", "ProtocolError"),
    "signaling_to_client": ("signaling", "ProtocolError"),
    "meet_command": ("chat", "CommandError"),
    "join_link": ("chat", "BadInvite, BadResumeToken"),
    "slack_request": ("chat", "none: returns whether the request is signed"),
}


class Broken(AssertionError):
    """A parser returned, but what it returned breaks a rule it must keep."""


def expect(condition: bool, rule: str) -> None:
    if not condition:
        raise Broken(rule)


def refused(call: Callable[[], object], error: type[Exception]) -> bool:
    """Whether ``call()`` raises ``error`` (anything else it raises escapes)."""
    try:
        call()
    except error:
        return True
    return False


def load(name: str) -> Target:
    module, _ = TARGETS[name]
    target: Target = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return target


def fields(data: bytes, count: int) -> list[bytes]:
    """``data`` split at its first ``count - 1`` newlines, padded to ``count`` fields: inputs
    that carry several values (headers and a body) stay readable and easy to mutate."""
    parts = data.split(b"\n", count - 1)
    return parts + [b""] * (count - len(parts))


def as_received(data: bytes) -> list[str | bytes]:
    """aiohttp hands a websocket text frame over as str (it refuses invalid UTF-8 itself);
    the parsers take bytes as well."""
    try:
        return [data, data.decode("utf-8")]
    except UnicodeDecodeError:
        return [data]


def text(data: bytes) -> str:
    """Any str, lone surrogates included: JSON strings and HTTP headers can carry them."""
    return data.decode("utf-8", errors="surrogateescape")
