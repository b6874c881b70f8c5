"""The command-line client and a relay offer for a peer connection it closed meanwhile.

``media_lost`` or a publish retry closes the client's peer connection and makes a new one; a
relay offer being applied to the old one at that moment must be dropped, not crash the client
(a soak run saw ``InvalidStateError: Cannot handle offer in signaling state "closed"`` end a
``conclave join``). The same offer out of turn for the connection still in use is the server's
fault, said as such.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bot.client.keyring import Keyring
from bot.client.media import MediaSession
from bot.client.session import ClientSession, MediaOptions
from bot.core.links import parse_link
from bot.errors import ProtocolError

LINK = "http://127.0.0.1:9/j/AAAAAAAAAAAAAAAAAAAAAA#iAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def _session() -> ClientSession:
    said: list[str] = []
    return ClientSession(parse_link(LINK), said.append, MediaOptions(video="none", audio="tone"))


async def _published(session: ClientSession) -> tuple[MediaSession, RTCPeerConnection]:
    """A media session as ``_publish`` makes one, answered by a stand-in relay peer."""
    media = MediaSession(Keyring("r", "p-ana", 1), roster=lambda: [], video="none", audio="tone")
    session.media = media
    relay = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN server
    offer = await media.offer()
    await relay.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    await relay.setLocalDescription(await relay.createAnswer())
    await media.accept_answer({"type": "answer", "sdp": relay.localDescription.sdp})
    return media, relay


async def _relay_offer(relay: RTCPeerConnection) -> dict[str, Any]:
    relay.addTransceiver("audio", direction="sendonly")
    await relay.setLocalDescription(await relay.createOffer())
    sdp = relay.localDescription.sdp
    return {"type": "offer", "negotiation": 2, "offer": {"type": "offer", "sdp": sdp}}


async def test_an_offer_for_a_connection_closed_meanwhile_is_dropped() -> None:
    session = _session()
    _, relay = await _published(session)
    try:
        handling = asyncio.ensure_future(session._on_offer(await _relay_offer(relay)))
        await asyncio.sleep(0)  # the offer is being applied ...
        await session._stop_media()  # ... when media_lost (or a retry) closes the connection
        await handling  # nothing raised: the offer was for nobody
        assert session.media is None
    finally:
        await relay.close()


async def test_an_offer_out_of_turn_for_the_connection_in_use_is_the_servers_fault() -> None:
    session = _session()
    media, relay = await _published(session)
    try:
        await media._pc.setLocalDescription(await media._pc.createOffer())  # have-local-offer
        with pytest.raises(ProtocolError, match="out of turn"):
            await session._on_offer(await _relay_offer(relay))
    finally:
        await session._stop_media()
        await relay.close()
