"""What a finished negotiation settled, read from the session descriptions' text.

A generator sends RTP that aiortc did not packetize, so it needs what aiortc would have used:
its line's SSRC (from its own offer), and the payload type, header extension ids and mid the
answer agreed to; a receiver needs which payload type is which kind. Plain text processing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.capacity.wire import HeaderTemplate

CODECS = {"video": "VP8/90000", "audio": "opus/48000/2"}


@dataclass
class MediaSection:
    kind: str
    mid: str = ""
    ssrcs: list[int] = field(default_factory=list)
    fid: tuple[int, int] | None = None
    payload_types: dict[int, str] = field(default_factory=dict)  # payload type -> rtpmap value
    extensions: dict[str, int] = field(default_factory=dict)  # URI -> id

    @property
    def media_ssrc(self) -> int:
        return self.fid[0] if self.fid is not None else self.ssrcs[0]


def sections(sdp: str) -> list[MediaSection]:
    found: list[MediaSection] = []
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            found.append(MediaSection(line[2:].split(" ", 1)[0]))
        elif not found:
            continue
        elif line.startswith("a=mid:"):
            found[-1].mid = line[6:]
        elif line.startswith("a=ssrc:"):
            ssrc = int(line[7:].split(" ", 1)[0])
            if ssrc not in found[-1].ssrcs:
                found[-1].ssrcs.append(ssrc)
        elif line.startswith("a=ssrc-group:FID "):
            media, rtx = line[17:].split()[:2]
            found[-1].fid = (int(media), int(rtx))
        elif line.startswith("a=rtpmap:"):
            pt, codec = line[9:].split(" ", 1)
            found[-1].payload_types[int(pt)] = codec
        elif line.startswith("a=extmap:"):
            ident, uri = line[9:].split()[:2]
            found[-1].extensions[uri] = int(ident.split("/", 1)[0])
    return found


def header_for(kind: str, offer: str, answer: str) -> HeaderTemplate:
    """The RTP header of the ``kind`` line an offerer sends on, once ``answer`` settled it."""
    mine = next(s for s in sections(offer) if s.kind == kind)
    agreed = next(s for s in sections(answer) if s.kind == kind and s.mid == mine.mid)
    payload_type = next(pt for pt, c in agreed.payload_types.items() if c == CODECS[kind])
    return HeaderTemplate(mine.media_ssrc, payload_type, agreed.extensions, mine.mid)


def payload_kinds(sdp: str) -> dict[int, str]:
    """Payload type -> "video" or "audio", for the codecs the generator sends."""
    return {
        pt: s.kind
        for s in sections(sdp)
        for pt, codec in s.payload_types.items()
        if codec == CODECS.get(s.kind)
    }
