"""What ``conclave join`` tells the person running it: one line per thing that happened.

The session (``session.py``) speaks the protocol and calls one method here per event; every
sentence a person reads is written here, so a second front end (the browser's) can find them
in one place. Lines are repeated only when what they say has changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.e2ee.roster import RosterView


def describe_roster(roster: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{m['name']} ({m['role']})" for m in roster) or "(nobody)"


def code_line(view: RosterView) -> str:
    """What people compare; "pending" (and why) until everyone's keys are verified, never a
    code left over from an earlier roster."""
    if view.code is not None:
        return f"security code: {view.code}"
    reasons = []
    if view.waiting:
        reasons.append(f"waiting for the keys of {', '.join(view.waiting)}")
    if view.rejected:
        reasons.append(f"the keys shown for {', '.join(view.rejected)} are not signed by them")
    return "security code: pending" + (f" ({'; '.join(reasons)})" if reasons else "")


class Presenter:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self._roster_ids: list[str] = []
        self._code_line: str | None = None
        self._last_code: str | None = None  # the last code shown, pending lines aside

    # --- joining and leaving ---------------------------------------------------------------

    def joined(self, topic: str, name: str, role: str, participant_id: str) -> None:
        self.say(f'joined "{topic}" as {name} ({role}); participant {participant_id}')

    def rejoined(self) -> None:
        self.say("rejoined")

    def connection_lost(self) -> None:
        self.say("connection lost; rejoining…")

    def let_in(self) -> None:
        self.say("the host let you in")

    def ended(self, reason: str) -> None:
        self.say(f"the meeting has ended ({reason})")

    def kicked(self) -> None:
        self.say("the host removed you from the meeting")

    def server_said(self, sentence: str) -> None:
        """The server's own sentence, as it is (a lobby note, a refusal to wait out)."""
        self.say(sentence)

    # --- the room --------------------------------------------------------------------------

    def lobby_waiting(self, waiting: Sequence[Mapping[str, Any]]) -> None:
        who = ", ".join(f"{w['name']} ({w['participant_id']})" for w in waiting)
        self.say(f"waiting in the lobby: {who or '(nobody)'}")

    def room_locked(self, locked: bool) -> None:
        self.say("the host locked the room" if locked else "the room is open")

    def notice(self, message: str) -> None:
        # Something the host should know (e.g. someone presented a used link); the meeting
        # goes on.
        self.say(f"notice: {message}")

    def warning(self, message: str) -> None:
        self.say(f"warning: {message}")

    def roster(self, roster: Sequence[Mapping[str, Any]]) -> None:
        ids = [e["participant_id"] for e in roster]
        if ids != self._roster_ids:
            self._roster_ids = ids
            self.say(f"roster: {describe_roster(roster)}")

    def security_code(self, view: RosterView) -> None:
        line = code_line(view)
        if line == self._code_line:
            return
        code = view.code
        if code is not None and code != self._last_code and self._last_code is not None:
            # Someone came or went, or their keys changed: the earlier comparison no longer
            # vouches for this roster.
            self.say("the security code changed: compare it with the others again")
        if code is not None:
            self._last_code = code
        self._code_line = line
        self.say(line)

    # --- media -----------------------------------------------------------------------------

    def no_relay(self) -> None:
        self.say("no media relay is available; staying in the meeting without media")

    def frame_counts(self, decrypted: int, dropped: int, misattributed: int) -> None:
        self.say(
            f"frames decrypted: {decrypted}, dropped (failed to decrypt): {dropped}, "
            f"refused (not from the participant shown): {misattributed}"
        )
