"""What a client's offer may ask of the relay: one audio and one video line, announced streams.

A peer connection costs the relay per m-line (a receiver, and a decoder thread once connected),
per SSRC (a libsrtp stream, a routing entry, statistics) and per ICE candidate (a candidate
pair whose connectivity checks the relay sends to whatever address the candidate names). So
before aiortc sees an offer, the relay refuses one with more than one audio or one video m-line,
or with any other kind, or with more than ``MAX_CANDIDATES`` candidates, and requires each line
the client sends on to announce its SSRC (``a=ssrc``): one media SSRC, plus at most its
retransmission SSRC tied to it by ``a=ssrc-group:FID``. Packets with any other SSRC are later
dropped before decryption (``bot.rtc.inbound.InboundGuard``). Answers to the relay's offers
are held to the same candidate limit (``check_candidates``).

Pure text processing, no aiortc: the core imports ``MediaRefused`` to pass the refusal on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.errors import ConclaveError

KINDS: Final = ("audio", "video")
MAX_SSRCS_PER_LINE: Final = 2  # the media SSRC and its RTX SSRC
# Host addresses of a few interfaces in two families, a server-reflexive and a relayed one:
# a real client sends well under this.
MAX_CANDIDATES: Final = 32
_SENDING: Final = frozenset({"sendonly", "sendrecv"})
_DIRECTIONS: Final = frozenset({"sendonly", "sendrecv", "recvonly", "inactive"})


class MediaRefused(ConclaveError):
    """The relay will not take this offer; the message says why, for the person."""

    code = "media_refused"


@dataclass(frozen=True)
class OfferedMedia:
    # kind -> the SSRCs of the line the client sends on: (media,) or (media, rtx)
    sources: dict[str, tuple[int, ...]]
    # every SSRC the offer announces, sending or not: the client's RTCP comes from these
    announced: frozenset[int]


@dataclass
class _Line:
    kind: str
    direction: str | None = None
    ssrcs: list[int] | None = None
    fid: tuple[int, int] | None = None


def check_candidates(sdp: str) -> None:
    """MediaRefused when a description names more ICE candidates than the relay will check.

    A candidate counts once however many media lines repeat it, as bundled lines do.
    """
    addresses = {
        tuple(line.split()[4:6])
        for line in sdp.splitlines()
        if line.lstrip().startswith("a=candidate:")
    }
    count = len(addresses)
    if count > MAX_CANDIDATES:
        raise MediaRefused(
            f"The session description has {count} ICE candidates; the relay takes at most "
            f"{MAX_CANDIDATES}."
        )


def check_offer(sdp: str) -> OfferedMedia:
    """The streams an offer publishes; MediaRefused when it asks for more than the relay gives."""
    lines = _media_lines(sdp)
    for kind in sorted({line.kind for line in lines}):
        if kind not in KINDS:
            raise MediaRefused(
                f"The offer has a {kind!r} media line; the relay carries only audio and video."
            )
    for kind in KINDS:
        count = sum(line.kind == kind for line in lines)
        if count > 1:
            raise MediaRefused(
                f"The offer has {count} {kind} media lines; the relay takes at most one audio "
                "and one video line per participant."
            )
    check_candidates(sdp)
    sources: dict[str, tuple[int, ...]] = {}
    announced: set[int] = set()
    for line in lines:
        ssrcs = line.ssrcs or []
        announced.update(ssrcs)
        if len(ssrcs) > MAX_SSRCS_PER_LINE:
            raise MediaRefused(
                f"The {line.kind} line announces {len(ssrcs)} SSRCs; the relay takes one media "
                "SSRC and at most its retransmission SSRC (no simulcast)."
            )
        if line.direction not in _SENDING:
            continue
        if not ssrcs:
            raise MediaRefused(
                f"The {line.kind} line announces no SSRC (a=ssrc); the relay forwards only "
                "streams the offer announces."
            )
        if len(ssrcs) == 1:
            sources[line.kind] = (ssrcs[0],)
        elif line.fid is not None and set(line.fid) == set(ssrcs):
            sources[line.kind] = line.fid
        else:
            raise MediaRefused(
                f"The {line.kind} line announces two SSRCs without an a=ssrc-group:FID line "
                "pairing them; the second may only be the first one's retransmission SSRC."
            )
    return OfferedMedia(sources, frozenset(announced))


def _media_lines(sdp: str) -> list[_Line]:
    lines: list[_Line] = []
    for raw in sdp.splitlines():
        text = raw.strip()
        if text.startswith("m="):
            lines.append(_Line(text[2:].split(" ", 1)[0]))
        elif not lines or not text.startswith("a="):
            continue  # session-level lines: aiortc reads directions per media line only
        elif text[2:] in _DIRECTIONS:
            lines[-1].direction = text[2:]
        elif text.startswith("a=ssrc:"):
            ssrc = _ssrc(text[7:].split(" ", 1)[0])
            found = lines[-1].ssrcs = lines[-1].ssrcs or []
            if ssrc not in found:
                found.append(ssrc)
        elif text.startswith("a=ssrc-group:FID "):
            pair = text[17:].split()
            if len(pair) != 2:
                raise MediaRefused("An a=ssrc-group:FID line must name exactly two SSRCs.")
            lines[-1].fid = (_ssrc(pair[0]), _ssrc(pair[1]))
    return lines


def _ssrc(text: str) -> int:
    if not (0 < len(text) <= 10 and text.isascii() and text.isdigit()) or int(text) > 0xFFFFFFFF:
        raise MediaRefused(f"{text[:20]!r} in the offer is not an SSRC.")
    return int(text)
