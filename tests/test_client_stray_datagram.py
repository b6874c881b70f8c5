"""A stranger's empty UDP datagram to a `conclave join` client's media port.

aioice hands every datagram that is not STUN, from any address, to aiortc's DTLS transport,
which reads its first byte: an empty one ended the transport, and with it the participant's
media (the relay's own connections have been guarded since dae13de). The client's connection
now drops it and counts it (internals.drop_empty_datagrams); the stand-in relay here has no
such guard, and the same datagram ends its side, which shows the attack is real.
"""

from __future__ import annotations

import socket
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bot.client.keyring import Keyring
from bot.client.media import MediaSession
from tests.relay.relay_fakes import eventually


def _local_address(pc: Any) -> tuple[str, int]:
    transport = pc.getTransceivers()[0].receiver.transport
    udp = transport.transport._connection._nominated[1].protocol.transport
    host, port = udp.get_extra_info("sockname")[:2]
    return str(host), int(port)


async def test_an_empty_datagram_does_not_end_the_clients_media() -> None:
    media = MediaSession(Keyring("r", "p-ana", 1), roster=lambda: [], video="none", audio="tone")
    relay = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN server
    try:
        offer = await media.offer()
        await relay.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await relay.setLocalDescription(await relay.createAnswer())
        await media.accept_answer({"type": "answer", "sdp": relay.localDescription.sdp})
        client: Any = media._pc
        await eventually(lambda: client.connectionState == "connected", "connected")
        received = relay.getTransceivers()[0].receiver
        await eventually(lambda: bool(received.getSynchronizationSources()), "audio flows")
        sent: Any = client.getTransceivers()[0].sender

        def packets() -> int:
            return int(sent._RTCRtpSender__packet_count)

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(b"", _local_address(client))
            await eventually(lambda: media.stray_datagrams == 1, "the client dropped it")
            before = packets()
            await eventually(lambda: packets() > before + 20, "its audio goes on")
            assert client.connectionState == "connected"
            # The stand-in relay has no guard: the same datagram ends its transport.
            stranger.sendto(b"", _local_address(relay))
            transport: Any = relay.getTransceivers()[0].receiver.transport
            await eventually(lambda: transport.state == "closed", "the unguarded side survived")
    finally:
        await media.close()
        await relay.close()
