"""One signaling-only room of the soak: a host and three guests, and a loop of what people do.

The loop picks, at random, one of: a guest says bye and comes back with its resume token; a
guest's connection drops and it resumes (after the others saw it go, or at once); the host's
connection drops and it resumes; the host kicks a guest in the meeting and re-invites them with
``/meet reissue``; the host runs ``/meet reissue`` on a guest who is in (which removes them).

After every step the room must settle: each connected participant's roster is exactly who is
connected, every one shows the same security code, no new key waits for its activation, and
each one's probe frame (sealed with its current sending key) decrypts for every other. Someone
who left or was removed must not decrypt the frames sealed after that (the design's "the
leaver cannot read the future"); a kicked participant's resume token and its old link must be
refused (``bad_resume``, ``revoked``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

from bench.soak_core import Core, Reply
from bench.soak_peer import Peer
from bench.soak_tally import Tally
from bot.core.links import parse_link

SETTLE_S = 30.0  # a room whose keys have not come together by then is an error
PAUSE_S = (0.5, 2.0)
AWAY_S = (0.2, 1.5)
GUESTS = 3
# How often each step is picked: people drop and come back far more often than hosts kick.
WEIGHTS = {
    "leave_return": 3,
    "drop_resume": 3,
    "drop_resume_at_once": 1,
    "host_drop": 1,
    "kick_reinvite": 2,
    "reissue_in_meeting": 1,
}


def room_of(link: str) -> str:
    return urlsplit(link).path.removeprefix("/j/")


class SoakRoom:
    def __init__(
        self, n: int, core: Core, http: aiohttp.ClientSession, tally: Tally, seed: int
    ) -> None:
        self.n = n
        self.room_id = ""
        self._core = core
        self._http = http
        self._tally = tally
        self._rng = random.Random(seed)
        self._ws = f"{core.url}/ws"
        self.users = [f"r{n:02d}g{i}" for i in range(1, GUESTS + 1)]
        self.host = self._peer("host")
        self.guests: dict[str, Peer] = {}
        self.links: dict[str, str] = {}  # each guest's current link (the soak's own memory)
        self.removed: set[str] = set()  # participant ids kicked or removed by a reissue
        self.broken = False

    def _peer(self, who: str) -> Peer:
        return Peer(f"room {self.n} {who}", self._ws, self._http, self._tally)

    def members(self) -> list[Peer]:
        return [self.host, *self.guests.values()]

    def holders(self) -> set[str]:
        """The participant ids whose sessions the soak holds (all connected between steps)."""
        return {p.participant_id for p in self.members()}

    def _error(self, what: str, detail: str) -> None:
        self._tally.error(f"{what}: room {self.n}: {detail}")

    # --- opening and closing ---------------------------------------------------------------

    async def open(self) -> None:
        mentions = " ".join(f"@{u}" for u in self.users)
        reply = await self._core.command(f"/meet {mentions} Soak room {self.n}")
        dms = reply.dms()
        if set(dms) != {*self.users, "host"}:
            raise RuntimeError(f"/meet sent links to {sorted(dms)}: {self._said(reply)}")
        self.room_id = room_of(dms["host"])
        await self.host.enter(dms["host"])
        for user in self.users:
            self.links[user] = dms[user]
            self.guests[user] = self._peer(user)
            await self.guests[user].enter(dms[user])
        await self.settle()

    async def end(self, *, from_console: bool) -> None:
        """The host ends the meeting, from the console or from inside the meeting. (A room
        whose loop broke off is ended from the console, and its clients are not judged: the
        error is counted already.)"""
        for peer in self.members():
            peer.expect("ended")
        if self.broken:
            await self._core.command(f"/meet end {self.room_id}")
            for peer in self.members():
                await peer.closed()
            return
        if from_console:
            reply = await self._core.command(f"/meet end {self.room_id}")
            if not any(line.startswith("Ended") for line in reply.lines):
                self._error("/meet end refused", self._said(reply))
        else:
            await self.host.send("end")
        for peer in self.members():
            if (why := await peer.closed()) != "ended":
                self._error("not ended", f"{peer.label}'s connection ended: {why}")

    @staticmethod
    def _said(reply: Reply) -> str:
        # Never the DM lines: they carry invite keys.
        return " / ".join(line for line in reply.lines if not line.startswith("DM to"))

    # --- the loop --------------------------------------------------------------------------

    async def churn(self, until: float) -> None:
        steps: dict[str, Callable[[str], Awaitable[None]]] = {
            "leave_return": self.leave_return,
            "drop_resume": lambda user: self.drop_resume(user, at_once=False),
            "drop_resume_at_once": lambda user: self.drop_resume(user, at_once=True),
            "host_drop": lambda user: self.host_drop(),
            "kick_reinvite": lambda user: self.kick_reinvite(user),
            "reissue_in_meeting": lambda user: self.reissue_in_meeting(user),
        }
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.monotonic() < until:
            step = self._rng.choices(names, weights)[0]
            user = self._rng.choice(self.users)
            try:
                await steps[step](user)
            except Exception as exc:
                # Which step, and how it failed; the room stops here, the others go on.
                self._error("step failed", f"{step} of {user}: {exc!r}")
                self.broken = True
                return
            self._tally.did(step)
            await asyncio.sleep(self._rng.uniform(*PAUSE_S))

    async def leave_return(self, user: str) -> None:
        guest = self.guests[user]
        await guest.leave()
        await self._without(guest)
        await asyncio.sleep(self._rng.uniform(*AWAY_S))
        await guest.resume()
        await self.settle()

    async def drop_resume(self, user: str, *, at_once: bool) -> None:
        guest = self.guests[user]
        await guest.drop()
        if not at_once:
            await self._without(guest)
        await guest.resume()
        await self.settle()

    async def host_drop(self) -> None:
        await self.host.drop()
        await self._without(self.host)
        await self.host.resume()
        await self.settle()

    async def kick_reinvite(self, user: str) -> None:
        guest = self.guests[user]
        guest.expect("kicked")
        await self.host.send("kick", participant=guest.participant_id)
        await self._removed(guest)
        await self._reinvite(
            user, await self._core.command(f"/meet reissue {self.room_id} @{user}")
        )

    async def reissue_in_meeting(self, user: str) -> None:
        guest = self.guests[user]
        guest.expect("kicked")
        reply = await self._core.command(f"/meet reissue {self.room_id} @{user}")
        await self._removed(guest)
        await self._reinvite(user, reply)

    async def _removed(self, guest: Peer) -> None:
        """``guest`` was just removed: it hears so, and its token is dead from now on."""
        if (why := await guest.closed()) != "kicked":
            self._error("not kicked", f"{guest.label}'s connection ended: {why}")
        self.removed.add(guest.participant_id)
        await self._without(guest)
        code = await guest.refused_with({"resume": guest.resume_token})
        if code != "bad_resume":
            self._error("removed token", f"{guest.label} resumed: {code or 'welcome'}")

    async def _reinvite(self, user: str, reply: Reply) -> None:
        link = reply.dms().get(user)
        if link is None:
            raise RuntimeError(f"/meet reissue sent no link: {self._said(reply)}")
        old = parse_link(self.links[user])
        self.links[user] = link
        fresh = self._peer(user)
        self.guests[user] = fresh
        await fresh.enter(link)
        code = await fresh.refused_with({"room": old.room_id, "invite": old.credential.reveal()})
        if code != "revoked":
            self._error("replaced link", f"{user}'s old link: {code or 'welcome'}")
        await self.settle()

    # --- settling --------------------------------------------------------------------------

    async def _without(self, outsider: Peer) -> None:
        """The others settle without ``outsider``, who then cannot read their new frames."""
        others = [p for p in self.members() if p is not outsider]
        if await self.settle(others):
            for member in others:
                if outsider.opens(member, member.probe()):
                    self._error("removed reads on", f"{outsider.label} decrypts {member.label}")

    async def settle(self, members: list[Peer] | None = None) -> bool:
        """Wait until ``members`` (everyone, by default) agree; False (an error) after
        SETTLE_S."""
        members = self.members() if members is None else members
        deadline = time.monotonic() + SETTLE_S
        while (problem := self._unsettled(members)) is not None:
            if time.monotonic() > deadline:
                self._error("not settled", problem)
                return False
            await asyncio.sleep(0.2)
        return True

    @staticmethod
    def _unsettled(members: list[Peer]) -> str | None:
        """What still keeps ``members`` apart; None once they agree."""
        ids = frozenset(p.participant_id for p in members)
        for peer in members:
            assert peer.keyring is not None
            if peer.gone is not None:
                return f"{peer.label} is not connected ({peer.gone})"
            if peer.roster != ids:
                return f"{peer.label}'s roster shows {len(peer.roster)}, not {len(ids)}"
            if peer.keyring.code is None:
                return f"{peer.label} shows no security code"
            if peer.key_pending():
                return f"{peer.label}'s new key is not in use yet"
        if len({p.keyring.code for p in members if p.keyring is not None}) != 1:
            return "their security codes differ"
        for sender in members:
            frame = sender.probe()
            for reader in members:
                if reader is not sender and not reader.opens(sender, frame):
                    return f"{reader.label} cannot decrypt {sender.label}"
        return None
