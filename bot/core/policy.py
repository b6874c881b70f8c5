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
    # A participant may resume this many times per window: a client that loops on resume
    # (to churn the roster and hold off key rotation) is refused with resume_too_soon.
    resume_limit: int = 5
    resume_window: float = 10.0
    # The host hears about a reused link at most once per invite in this many seconds, so
    # whoever holds the link cannot flood the host's DMs.
    reuse_notice_interval: float = 60.0
