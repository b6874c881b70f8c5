"""Human durations such as ``90s``, ``45m``, ``2h`` or ``1h30m``, for commands and config."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d{1,6})([smhd])")


def parse_duration(text: str) -> int:
    """Seconds in ``text``; raises ValueError with a sentence for people otherwise."""
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError("empty duration; use a form like 30m, 2h or 1d")
    if cleaned.isdigit():
        return int(cleaned)
    pos = 0
    total = 0
    seen: set[str] = set()
    while pos < len(cleaned):
        match = _PART.match(cleaned, pos)
        if match is None or match.group(2) in seen:
            raise ValueError(f"{text!r} is not a duration; use a form like 30m, 2h, 1d or 1h30m")
        seen.add(match.group(2))
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total


def format_duration(seconds: float) -> str:
    remaining = round(seconds)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)
