"""The hub checks a key announcement the way every client will (docs/PROTOCOL.md 4.2): signed
by the announced Ed25519 key for this connection's room, participant id and sender index. A
connection that announces anything else, or keys that do not parse as clients parse them, is
closed and its keys reach no roster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.signaling.hub import CLOSE_PROTOCOL
from tests.support.keys import announced_keys
from tests.support.meeting import Peer, collect_until, entry_of, join, make_meeting
from tests.support.server import Running, expect_refused, receive_until, serve


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(tmp_path) as running:
        yield running


def signed_for(peer: Peer, **signed: Any) -> dict[str, str]:
    return announced_keys(peer.welcome, **signed)


Case = Callable[[Peer, Peer], dict[str, Any]]


def with_keys(**keys: object) -> Case:
    """Malformed keys, with a well-formed signature: the keys alone are what is wrong."""
    return lambda ana, ben: {"signature": signed_for(ana)["signature"], **keys}


CASES: dict[str, Case] = {
    # Keys that do not parse as clients parse them.
    "too_short": with_keys(x25519="A" * 42, ed25519="B" * 43),
    "too_long": with_keys(x25519="A" * 43, ed25519="B" * 44),
    "padded": with_keys(x25519="A" * 42 + "=", ed25519="B" * 43),
    "standard_base64": with_keys(x25519="A+/" + "A" * 40, ed25519="B" * 43),
    "missing_ed25519": with_keys(x25519="A" * 43),
    "not_text": with_keys(x25519=7, ed25519="B" * 43),
    # 43 characters carry 258 bits; clients refuse a key whose last 2 bits are not zero.
    "non_canonical": with_keys(x25519="A" * 42 + "B", ed25519="A" * 43),
    # Keys signed for something other than this connection, or not signed.
    "another_room": lambda ana, ben: signed_for(ana, room="another-room"),
    "another_participant": lambda ana, ben: signed_for(ana, participant=ben.participant_id),
    "another_index": lambda ana, ben: signed_for(ana, index=int(ben.welcome["sender_index"])),
    "someone_elses_signature": lambda ana, ben: {
        **signed_for(ana),
        "signature": signed_for(ben)["signature"],
    },
    "no_signature": lambda ana, ben: {k: v for k, v in signed_for(ana).items() if k != "signature"},
    "short_signature": lambda ana, ben: {
        **signed_for(ana),
        "signature": signed_for(ana)["signature"][:-4],
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_keys_not_signed_for_this_connection_or_malformed_are_refused(
    case: str, server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ben = await join(server, http, stack, meeting, "ben")
    ana = await join(server, http, stack, meeting, "ana")
    await receive_until(ana.ws, "roster", lambda m: len(m["roster"]) == 2)

    await ana.send("keys", **CASES[case](ana, ben))
    _, close_code = await expect_refused(ana.ws, "bad_message")
    assert close_code == CLOSE_PROTOCOL

    seen = await collect_until(ben.ws, "roster", lambda m: len(m["roster"]) == 1)
    assert not [m for m in seen for e in m.get("roster", []) if "keys" in e]


async def test_a_signed_announcement_reaches_the_roster_with_its_signature(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ben = await join(server, http, stack, meeting, "ben")
    ana = await join(server, http, stack, meeting, "ana")
    keys: dict[str, Any] = announced_keys(ana.welcome)
    await ana.send("keys", **keys)
    update = await receive_until(
        ben.ws,
        "roster",
        lambda m: any(
            e["participant_id"] == ana.participant_id and "keys" in e for e in m["roster"]
        ),
    )
    assert entry_of(update, ana.participant_id)["keys"] == keys
    assert set(keys) == {"x25519", "ed25519", "signature"}
