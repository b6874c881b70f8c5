"""A hostile publisher's RTP with malformed header extensions, against a real relay worker.

The attacker completed DTLS with the worker, so its packets are authentic SRTP on its own
announced video SSRC: they pass the inbound guard and libsrtp, and reach aiortc's RTP parser.
aiortc 1.16 decodes the values of the extensions it knows with ``struct.unpack`` and catches
only ``ValueError`` around the parse, so an abs-send-time of other than three bytes (or an audio
level of other than one) raised ``struct.error`` out of the DTLS transport's receive loop: a
logged traceback, and the publisher's whole connection closed. Here each malformed shape is
followed by a good packet of the same publisher, which must still reach the subscriber, and the
other publisher in the room must go on reaching it too. An extension length beyond the packet
never gets past libsrtp; an empty extension block is well-formed and forwarded.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable
from typing import Any

import pytest

from tests.relay.relay_fakes import FakeClient, eventually
from tests.relay.test_hostile_publisher import (
    StartWorker,
    flowing,
    honest_meeting,
    payload_type,
    worker,
)

__all__ = ["worker"]  # the fixture, which pytest finds among this module's names

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
ONE_BYTE, TWO_BYTE = 0xBEDE, 0x1000
# A VP8 payload that starts a key frame (S bit, partition 0, P bit clear): the relay starts
# forwarding a stream to a new subscriber only at one.
KEY_FRAME = bytes([0x10, 0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x20, 0x00, 0x20, 0x00])


def extension_ids(sdp: str) -> dict[str, int]:
    return {uri: int(n) for n, uri in re.findall(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", sdp, re.M)}


def video_ssrc(sdp: str) -> int:
    """The media SSRC of the first video line."""
    line = sdp.split("m=video ", 1)[1].split("\nm=", 1)[0]
    found = re.search(r"^a=ssrc:(\d+) ", line, re.M)
    assert found is not None, "the video line announces no SSRC"
    return int(found[1])


def block(profile: int, elements: bytes) -> bytes:
    """An RTP header extension block: profile, length in 32-bit words, elements padded."""
    elements += bytes(-len(elements) % 4)
    return struct.pack("!HH", profile, len(elements) // 4) + elements


def malformed_blocks(ids: dict[str, int]) -> dict[str, bytes]:
    mid, level, abs_time = ids[MID], ids[AUDIO_LEVEL], ids[ABS_SEND_TIME]

    def one(x_id: int, value: bytes) -> bytes:  # a one-byte-header element
        return bytes([x_id << 4 | (len(value) - 1)]) + value

    return {
        "abs-send-time of 1 byte": block(ONE_BYTE, one(abs_time, b"\x01")),
        "abs-send-time of 2 bytes": block(ONE_BYTE, one(abs_time, b"\x01\x02")),
        "abs-send-time of 4 bytes": block(ONE_BYTE, one(abs_time, b"\x01\x02\x03\x04")),
        "audio level of 2 bytes": block(ONE_BYTE, one(mid, b"0") + one(level, b"\x7f\x7f")),
        "mid that is not UTF-8": block(ONE_BYTE, one(mid, b"\xff\xfe")),
        "one-byte element past the block": block(ONE_BYTE, bytes([mid << 4 | 15]) + b"ab"),
        "two-byte abs-send-time of 0 bytes": block(TWO_BYTE, bytes([abs_time, 0])),
        "two-byte element past the block": block(TWO_BYTE, bytes([mid, 9]) + b"ab"),
        "two-byte element header cut": block(TWO_BYTE, bytes([0, 0, 0, mid])),
    }


def rtp(pt: int, ssrc: int, seq: int, extension: bytes, payload: bytes) -> bytes:
    first = 0x90 if extension else 0x80  # version 2, X when there is a block
    return struct.pack("!BBHLL", first, 0x80 | pt, seq, seq * 3000, ssrc) + extension + payload


async def test_malformed_header_extensions_are_dropped_alone(
    worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    core, relay = await worker()
    ben = await honest_meeting(core)  # ana publishes to ben, in room "honest"
    mal = FakeClient("mal")
    await core.join("honest", mal, media=False)  # mal sends only what the test makes
    peer = relay.peer("honest", "mal")
    await eventually(lambda: peer.guard.started, "mal's SRTP is set up at the relay")
    sdp = mal.pc.localDescription.sdp  # its first video line is the one it publishes
    pt, ssrc, ids = payload_type(sdp, "video"), video_ssrc(sdp), extension_ids(sdp)
    good_time = block(ONE_BYTE, bytes([ids[ABS_SEND_TIME] << 4 | 2, 0x01, 0x02, 0x03]))
    # mal's own aiortc transport encrypts whatever it is given with its SRTP keys.
    sending: Any = mal.pc.getTransceivers()[0].sender.transport
    at_relay: Any = peer.pc.getTransceivers()[0].receiver.transport
    seq = 0

    def connected() -> None:
        assert at_relay.state == "connected", f"mal's DTLS transport at the relay: {at_relay.state}"

    async def send_good(extension: bytes = good_time) -> None:
        nonlocal seq
        seq += 1
        payload = KEY_FRAME + b"good %d" % seq
        await sending._send_rtp(rtp(pt, ssrc, seq, extension, payload))
        await eventually(arrived(payload), f"ben gets mal's good packet {seq}")

    def arrived(payload: bytes) -> Callable[[], bool]:
        def check() -> bool:
            connected()
            got = ben.received.get(("mal", "video"))
            return got is not None and payload in got.rtp_payloads

        return check

    await eventually(lambda: ("mal", "video") in ben.received, "ben subscribes to mal's video")
    await send_good()
    caplog.clear()
    malformed = malformed_blocks(ids)
    for name, extension in malformed.items():
        seq += 1
        await sending._send_rtp(rtp(pt, ssrc, seq, extension, KEY_FRAME + name.encode()))
        await send_good()
    # An extension length beyond the packet: libsrtp will not protect that, so the length is
    # patched into a protected packet. The relay's libsrtp checks the header's lengths before
    # the tag ("unsupported parameter", not "authentication failure"), so an authentic packet
    # of this shape would never reach the parser either.
    seq += 1
    overrun = sending._tx_srtp.protect(rtp(pt, ssrc, seq, good_time, KEY_FRAME + b"overrun"))
    overrun = overrun[:14] + struct.pack("!H", 200) + overrun[16:]
    passed = peer.guard.passed
    await sending.transport._send(overrun)
    await eventually(lambda: peer.guard.passed > passed, "the relay takes in the overrun")
    await send_good()
    # An empty extension block is well-formed: forwarded like any other packet.
    await send_good(block(ONE_BYTE, b""))

    got = ben.received[("mal", "video")].rtp_payloads
    assert [p for p in got if p.startswith(KEY_FRAME) and b"good" not in p] == [], "forwarded"
    assert peer.pc.connectionState == "connected"
    assert peer.guard.malformed == len(malformed)
    problems = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING or "Traceback" in r.getMessage()
    ]
    assert problems == []
    await flowing(ben, "ana", 10)
