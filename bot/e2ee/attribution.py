"""Whose frame this is: the sender index that a protected frame's SFrame KID names.

The relay tells a receiver which participant a track comes from (its msid), and could name
anyone. The KID cannot be changed without the frame failing to decrypt (the header is part of
the AEAD's associated data), and key transport ties each sender index to one roster entry, so
a receiver checks the KID's sender index against the index of the participant the track is
shown under before it decrypts anything (``docs/PROTOCOL.md`` sections 3 and 6).
"""

from __future__ import annotations

from bot.e2ee.errors import SFrameError
from bot.e2ee.header import decode_header
from bot.e2ee.kid import KeyId
from bot.e2ee.media import Codec, clear_prefix_length


def frame_sender_index(codec: Codec, data: bytes) -> int | None:
    """The sender index in the KID of ``clear_prefix || SFrame``, read without decrypting;
    None if there is no well-formed header there (such a frame fails to decrypt anyway)."""
    try:
        kid, _, _ = decode_header(data[clear_prefix_length(codec, data) :])
    except SFrameError:
        return None
    key_id = KeyId.parse(kid)
    return None if key_id is None else key_id.sender_index
