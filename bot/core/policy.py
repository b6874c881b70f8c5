"""The limits a deployment sets on meetings."""

from __future__ import annotations

from dataclasses import dataclass

MIN_TTL_SECONDS = 60


@dataclass(frozen=True)
class MeetingPolicy:
    default_ttl: int = 24 * 3600
    max_ttl: int = 7 * 24 * 3600
    invite_ttl: int = 24 * 3600
    max_invitees: int = 25
    max_topic_length: int = 200
    default_topic: str = "Meeting"
