"""Targets for what a client reads from other participants through the relay and the hub: SFrame
headers and frames, protected media frames, key-transport messages and rosters."""

from __future__ import annotations

from bot.e2ee.attribution import frame_sender_index
from bot.e2ee.errors import E2EEError, KeyTransportError, SFrameError
from bot.e2ee.header import decode_header, encode_header
from bot.e2ee.media import Codec, unprotect
from bot.e2ee.roster import KeyBook, ShownEntry
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.senderkeys import SenderKeys
from bot.e2ee.sframe import SFrameContext, decrypt
from bot.e2ee.transport import SIGNATURE_LABEL, KeyReceiver, message_from_text
from bot.errors import ProtocolError
from bot.signaling.envelope import WIRE_LIMIT
from bot.signaling.messages import TO_CLIENT, parse
from tests.fuzz import material
from tests.fuzz.targets import expect, refused, text

# The client's own sender index in the media target; the vector's sender is index 3.
_RECEIVER_INDEX = 1


def sframe_header(data: bytes) -> None:
    try:
        kid, ctr, length = decode_header(data)
    except SFrameError:
        return
    expect(encode_header(kid, ctr) == data[:length], "a header is the one encoding of its values")


def _one_shot(suite: int, base_key: bytes, frame: bytes, metadata: bytes) -> bytes | None:
    try:
        return decrypt(suite, base_key, frame, metadata)
    except SFrameError:
        return None


def sframe_decrypt(data: bytes) -> None:
    """Byte 0 picks a vector key, byte 1 is the metadata length, then metadata, then the frame.

    The receive path (``SFrameContext.decrypt``) reads the header inline and skips
    ``decode_header``'s checks on purpose; the one-shot ``decrypt`` does not. Both must agree on
    every frame, and an accepted frame must not be accepted twice.
    """
    head, rest = data[:2].ljust(2, b"\0"), data[2:]
    key = material.frame_keys()[head[0] % len(material.frame_keys())]
    metadata, frame = rest[: head[1]], rest[head[1] :]
    context = SFrameContext(key.suite)
    context.add_receive_key(key.kid, SecretKey(key.base_key))
    try:
        plaintext: bytes | None = context.decrypt(frame, metadata)
    except SFrameError:
        plaintext = None
    expect(
        plaintext == _one_shot(key.suite, key.base_key, frame, metadata),
        "the receive path and the one-shot decrypt agree",
    )
    if plaintext is not None:
        replay = refused(lambda: context.decrypt(frame, metadata), SFrameError)
        expect(replay, "a frame is accepted once")


def media_frame(data: bytes) -> None:
    """Byte 0 picks the codec (bit 0: VP8 or Opus); the rest is ``clear_prefix || SFrame`` as a
    client receives it, opened with the sender keys of a client that holds the vector's key."""
    codec = Codec.OPUS if data[:1] and data[0] & 1 else Codec.VP8
    frame = data[1:]
    keys = SenderKeys(_RECEIVER_INDEX, random_bytes=lambda n: b"\x01" * n)
    peer = material.profile_sender_key()
    keys.add_peer_key(peer, 0.0)
    held = keys.held_kids()
    named = frame_sender_index(codec, frame)
    try:
        unprotect(codec, frame, lambda sframe, metadata: keys.decrypt(sframe, metadata, 0.0))
    except SFrameError:
        expect(keys.held_kids() == held, "a frame that fails leaves no key behind")
        return
    expect(named == peer.id.sender_index, "a frame that decrypts names its sender's index")


def _open(message: bytes) -> None:
    t = material.transport()
    receiver = KeyReceiver(room_id=t.room_id, participant_id=t.recipient_id, keys=t.recipient)
    roster = t.roster
    try:
        key = receiver.open(message, roster)
    except KeyTransportError:
        return
    expect(key.id.sender_index == roster[t.sender_id].sender_index, "the sender's own index")
    replay = refused(lambda: receiver.open(message, roster), KeyTransportError)
    expect(replay, "a key message is accepted once")


def key_transport(data: bytes) -> None:
    """A key message as bytes, and the same input as the text a ``key`` message carries."""
    _open(data)
    try:
        message = message_from_text(text(data))
    except KeyTransportError:
        return
    _open(message)


def key_transport_signed(data: bytes) -> None:
    """A roster member may sign anything: the input with its last 64 bytes replaced by the
    vector sender's real signature, so the checks after the signature are reached too."""
    body = data[:-64] if len(data) > 64 else data
    _open(body + material.transport().sender.sign(SIGNATURE_LABEL + body))


def roster(data: bytes) -> None:
    """Up to three server messages, one a line, read as the client reads them: the ones that
    carry a roster go to one client's key book in turn."""
    t = material.transport()
    book = KeyBook(t.room_id, t.recipient_id, material.OWN_INDEX, material.own_public())
    for line in data.split(b"\n", 2):
        try:
            message = parse(line, TO_CLIENT, max_bytes=WIRE_LIMIT)
            if message["type"] in ("welcome", "admitted", "roster"):
                book.view([ShownEntry.from_json(entry) for entry in message["roster"]])
        except (ProtocolError, E2EEError):
            continue
