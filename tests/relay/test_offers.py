"""What the relay takes from a client's offer (bot/relay/offers.py), on real and crafted SDP."""

from __future__ import annotations

import pytest

from bot.relay.offers import MediaRefused, check_candidates, check_offer
from bot.rtc.peer import make_peer_connection, prefer_codec


def section(kind: str, direction: str, *extra: str) -> str:
    return "\r\n".join([f"m={kind} 9 UDP/TLS/RTP/SAVPF 96", f"a=mid:{kind}", *extra, direction])


def sdp(*sections: str) -> str:
    return "\r\n".join(["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", *sections]) + "\r\n"


# What a browser sends: FID group first, several attribute lines per SSRC.
BROWSER_VIDEO = section(
    "video",
    "a=sendonly",
    "a=ssrc-group:FID 1111 2222",
    "a=ssrc:1111 cname:x",
    "a=ssrc:1111 msid:s t",
    "a=ssrc:2222 cname:x",
    "a=ssrc:2222 msid:s t",
)
SIMULCAST = [f"a=ssrc:{n} cname:x" for n in (1, 2, 3)]
CANDIDATES = [f"a=candidate:{n} 1 udp 1 192.0.2.{n} 9 typ host" for n in range(33)]


async def test_an_aiortc_clients_offer() -> None:
    pc = make_peer_connection()
    try:
        senders = {}
        for kind in ("audio", "video"):
            transceiver = pc.addTransceiver(kind, direction="sendonly")
            prefer_codec(transceiver)
            senders[kind] = transceiver.sender
        await pc.setLocalDescription(await pc.createOffer())
        offered = check_offer(pc.localDescription.sdp)
    finally:
        await pc.close()
    video, audio = senders["video"], senders["audio"]
    assert offered.sources == {"audio": (audio._ssrc,), "video": (video._ssrc, video._rtx_ssrc)}
    assert {audio._ssrc, video._ssrc, video._rtx_ssrc} <= offered.announced


def test_a_browser_style_offer_and_lines_that_send_nothing() -> None:
    offered = check_offer(
        sdp(BROWSER_VIDEO, section("audio", "a=recvonly", "a=ssrc:7 cname:x")),
    )
    assert offered.sources == {"video": (1111, 2222)}
    assert offered.announced == {1111, 2222, 7}
    assert check_offer(sdp()).sources == {}  # a participant that publishes nothing


@pytest.mark.parametrize(
    ("offer", "says"),
    [
        (sdp(BROWSER_VIDEO, BROWSER_VIDEO), "The offer has 2 video media lines"),
        (sdp(*[section("audio", "a=inactive")] * 80), "The offer has 80 audio media lines"),
        (sdp(section("application", "")), "carries only audio and video"),
        (sdp(section("video", "a=sendonly")), "announces no SSRC"),
        (sdp(section("audio", "a=sendrecv")), "announces no SSRC"),
        (sdp(section("video", "a=sendonly", "a=ssrc:1 x", "a=ssrc:2 x")), "without an a=ssrc"),
        (sdp(section("video", "a=sendonly", "a=ssrc-group:SIM 1 2 3", *SIMULCAST)), "3 SSRCs"),
        (sdp(section("video", "a=sendonly", "a=ssrc:12a cname:x")), "is not an SSRC"),
        (sdp(section("video", "a=sendonly", "a=ssrc:4294967296 x")), "is not an SSRC"),
        (sdp(section("video", "a=sendonly", "a=ssrc-group:FID 1", "a=ssrc:1 x")), "exactly two"),
        (sdp(section("audio", "a=recvonly", *CANDIDATES)), "33 ICE candidates"),
    ],
)
def test_refused_offers_say_why(offer: str, says: str) -> None:
    with pytest.raises(MediaRefused) as refused:
        check_offer(offer)
    assert says in refused.value.message
    assert refused.value.code == "media_refused"


def test_answers_are_held_to_the_candidate_limit() -> None:
    # Bundled lines repeat the same candidates: each address counts once.
    check_candidates(sdp(*[section("video", "a=recvonly", *CANDIDATES[:32])] * 100))
    with pytest.raises(MediaRefused, match="33 ICE candidates; the relay takes at most 32"):
        check_candidates(sdp(section("audio", "a=recvonly", *CANDIDATES)))
