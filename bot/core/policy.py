"""The limits a deployment sets on meetings."""

from __future__ import annotations

from dataclasses import dataclass

from bot.durations import format_duration
from bot.errors import CommandError, TooManyInvitees

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

    def meeting_ttl(self, asked: int | None) -> int:
        """How long a meeting asked to last ``asked`` seconds (None: the default) lasts."""
        ttl = self.default_ttl if asked is None else asked
        if ttl < MIN_TTL_SECONDS or ttl > self.max_ttl:
            raise CommandError(
                f"A meeting can last from {format_duration(MIN_TTL_SECONDS)} to "
                f"{format_duration(self.max_ttl)}; {format_duration(ttl)} is out of range."
            )
        return ttl

    def meeting_topic(self, asked: str) -> str:
        """The topic as shown: whitespace collapsed, the default if none was given."""
        topic = " ".join(asked.split()) or self.default_topic
        if len(topic) > self.max_topic_length:
            raise CommandError(
                f"The topic is {len(topic)} characters; the limit is {self.max_topic_length}."
            )
        return topic

    def check_invitee_count(self, count: int) -> None:
        """Raise TooManyInvitees if one command names more people than it may invite."""
        if count > self.max_invitees:
            raise TooManyInvitees(count, self.max_invitees)
