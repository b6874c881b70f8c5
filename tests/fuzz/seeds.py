"""The seed corpus: valid inputs built with the project's own vectors and message builders, and a
few edge cases, for every target. ``python -m tests.fuzz.seeds`` rewrites tests/fuzz/corpus;
``test_fuzz.py`` checks that what is on disk is what this builds.

Each crash the fuzzers found is kept here as a seed too (``regression-*``), so that every later
run starts from it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from bot.e2ee.announce import announce
from bot.e2ee.header import encode_header
from bot.e2ee.media import Codec, clear_prefix_length, protect
from bot.e2ee.senderkeys import SenderKey
from bot.e2ee.sframe import SFrameContext
from bot.relay import control
from bot.relay.tickets import make_core_ticket
from bot.secret import Secret
from bot.signaling.envelope import PROTOCOL_VERSION
from bot.signaling.messages import to_client, to_server
from tests.fuzz import material
from tests.fuzz.material import h

CORPUS: Final = Path(__file__).resolve().parent / "corpus"
Seeds = dict[str, bytes]

_SDP: Final = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
_ROOM: Final = "Yd3kQ9vX2mTq8LrPzW4sNa"
_TOKEN: Final = "p_ben4Kd9." + "A" * 43


def sframe_header() -> Seeds:
    seeds = {f"kid{kid:x}-ctr{ctr:x}": encode_header(kid, ctr) for kid, ctr in _header_values()}
    seeds["empty"] = b""
    seeds["truncated-kid"] = b"\xf0\x01"
    seeds["non-minimal-ctr"] = b"\x08\x03"
    return seeds


def _header_values() -> list[tuple[int, int]]:
    values = [0, 7, 8, 0xFF, 0x100, 0xFFFF_FFFF, (1 << 64) - 1]
    return [(kid, ctr) for kid in values for ctr in values[::2]]


def _profile_frames() -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = material.protocol()["sframe_profile"]["frames"]
    return frames


def _prefix(frame: dict[str, Any]) -> int:
    return clear_prefix_length(Codec(frame["codec"]), h(frame["frame"]))


def sframe_decrypt() -> Seeds:
    seeds: Seeds = {}
    for i, v in enumerate(material.rfc9605()["sframe"]):
        metadata = h(v["metadata"])
        seeds[f"rfc9605-suite{i + 1}"] = bytes((i, len(metadata))) + metadata + h(v["ct"])
    profile = len(material.frame_keys()) - 1
    for frame in _profile_frames():
        n = _prefix(frame)
        protected = h(frame["protected"])
        seeds[frame["name"].replace(" ", "-")] = bytes((profile, n)) + protected
    return seeds


def _protect(key: SenderKey, codec: Codec, frame: bytes) -> bytes:
    context = SFrameContext(key.suite)
    context.add_send_key(key.kid, key.base_key)
    return protect(codec, frame, lambda metadata, plain: context.encrypt(key.kid, metadata, plain))


def media_frame() -> Seeds:
    seeds: Seeds = {}
    for frame in _profile_frames():
        codec = bytes((1 if frame["codec"] == "opus" else 0,))
        seeds[frame["name"].replace(" ", "-")] = codec + h(frame["protected"])
    key = material.profile_sender_key()
    vp8_key_frame = h(_profile_frames()[0]["frame"])
    ratcheted = key.ratcheted().ratcheted()
    seeds["vp8-ratcheted-2-steps"] = b"\0" + _protect(ratcheted, Codec.VP8, vp8_key_frame)
    seeds["opus-empty"] = b"\x01"
    seeds["vp8-prefix-only"] = b"\0" + vp8_key_frame[:10]
    return seeds


def key_transport() -> Seeds:
    message = material.transport().message
    return {
        "vector": message,
        "vector-text": material.protocol()["key_transport"]["message_text"].encode(),
        "truncated": message[:60],
    }


def key_transport_signed() -> Seeds:
    message = material.transport().message
    return {"vector": message, "unsigned-header": message[:-64]}


def _welcome(roster: list[dict[str, Any]]) -> str:
    return to_client(
        "welcome",
        participant_id="p_ben4Kd9",
        sender_index=material.OWN_INDEX,
        name="Ben",
        role="guest",
        admitted=True,
        room={"id": _ROOM, "topic": "Sync", "state": "open", "lobby": False},
        roster=roster,
        resume_token=_TOKEN,
    )


def roster() -> Seeds:
    t = material.transport()
    ana_announced = material.protocol()["key_announcement"]["json"]
    ben = announce(t.recipient, t.room_id, t.recipient_id, material.OWN_INDEX).to_json()
    ana_entry = {"participant_id": t.sender_id, "name": "Ana", "role": "host", "sender_index": 3}
    ben_entry = {"participant_id": t.recipient_id, "name": "Ben", "role": "guest"}
    full = [{**ana_entry, "keys": ana_announced}, {**ben_entry, "sender_index": 5, "keys": ben}]
    waiting = [ana_entry, {**ben_entry, "sender_index": 5}]
    swapped = [{**ana_entry, "keys": ben}, {**ben_entry, "sender_index": 5, "keys": ben}]
    return {
        "welcome-then-roster": "\n".join(
            (_welcome(waiting), to_client("roster", roster=full))
        ).encode(),
        "keys-replaced": "\n".join((_welcome(full), to_client("roster", roster=swapped))).encode(),
        "admitted": to_client("admitted", roster=full).encode(),
    }


def vp8_descriptor() -> Seeds:
    key_frame = h(_profile_frames()[0]["frame"])
    delta = h(_profile_frames()[1]["frame"])
    return {
        "key-frame": b"\x10" + key_frame,
        "delta-frame": b"\x10" + delta,
        "not-partition-start": b"\x00" + key_frame,
        "picture-id-7bit": b"\x90\x80\x05" + key_frame,
        "picture-id-15bit": b"\x90\x80\x85\x05" + key_frame,
        "all-extensions": b"\x90\xf0\x85\x05\x01\x20" + key_frame,
        "truncated-picture-id": b"\x90\x80",
    }


def relay_control() -> Seeds:
    offer = control.sdp("offer", _SDP)
    answer = control.sdp("answer", _SDP)
    room, who = {"room": _ROOM}, {"participant": "p_ana7Qx2"}
    messages: dict[str, dict[str, Any]] = {
        control.WELCOME: {"ticket": "v1.core.1.2.3"},
        control.JOIN: {"id": 1, **room, **who, "offer": offer},
        control.ANSWER: {"id": 2, **room, **who, "negotiation": 1, "answer": answer},
        control.LEAVE: {"id": 3, **room, **who},
        control.CLOSE_ROOM: {"id": 4, **room},
        control.STATS: {"id": 5},
        control.READY: {"worker_id": "w1", "rooms": 0, "participants": 0},
        control.LOAD: {"rooms": 2, "participants": 7},
        control.RESULT: {"id": 6, "ok": True},
        control.OFFER: {**room, **who, "negotiation": 2, "offer": offer},
        control.PEER_LOST: {**room, **who, "join_id": 1},
        control.ERROR: {"message": "Binary frames are ignored."},
    }
    seeds = {kind: control.encode(kind, **fields).encode() for kind, fields in messages.items()}
    seeds["failed"] = control.failed(7, "no such room").encode()
    return seeds


def _worker_ticket(secret: str, nonce: str) -> str:
    ts = str(material.NOW)
    message = f"conclave relay worker v1|{material.WORKER_ID}|{ts}|{nonce}".encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"v1.{material.WORKER_ID}.{ts}.{nonce}.{mac}"


def relay_ticket() -> Seeds:
    secret = Secret(material.RELAY_SECRET)
    core = make_core_ticket(secret, material.WORKER_ID, material.WORKER_NONCE, material.NOW)
    worker = _worker_ticket(material.RELAY_SECRET, material.WORKER_NONCE)
    return {
        "valid-both": f"{worker}\n{core}".encode(),
        "dotted-worker-id": f"v1.a.b.{material.NOW}.{'0' * 32}.{'0' * 64}\n".encode(),
    }


def _hello() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("hello-invite", {"version": PROTOCOL_VERSION, "room": _ROOM, "invite": _TOKEN}),
        ("hello-resume", {"version": PROTOCOL_VERSION, "resume": _TOKEN}),
    ]


def signaling_to_server() -> Seeds:
    keys = material.protocol()["key_announcement"]["json"]
    messages: list[tuple[str, dict[str, Any]]] = [
        *_hello(),
        ("ping", {}),
        ("bye", {}),
        ("keys", dict(keys)),
        ("key", {"to": "p_ben4Kd9", "payload": "Q0tUAg"}),
        ("publish", {"offer": {"type": "offer", "sdp": _SDP}}),
        ("answer", {"answer": {"type": "answer", "sdp": _SDP}, "negotiation": 1}),
        ("admit", {"participant": "p_ben4Kd9"}),
        ("kick", {"participant": "p_ben4Kd9"}),
        ("lock", {}),
        ("unlock", {}),
        ("end", {}),
    ]
    return {name: to_server(name.partition("-")[0], **f).encode() for name, f in messages}


def signaling_to_client() -> Seeds:
    entry = {"participant_id": "p_ana7Qx2", "name": "Ana", "role": "host", "sender_index": 3}
    note = {"code": "joined", "message": "Ana joined."}
    offer = {"type": "offer", "sdp": _SDP}
    messages: dict[str, dict[str, Any]] = {
        "error": note,
        "warning": note,
        "lobby": {"message": "Wait for the host."},
        "lobby_waiting": {"waiting": [{"participant_id": "p_ben4Kd9", "name": "Ben"}]},
        "admitted": {"roster": [entry]},
        "roster": {"roster": [entry]},
        "room": {"locked": True},
        "ended": {"reason": "The host ended the meeting."},
        "kicked": {"message": "The host removed you."},
        "notice": {**note, "participant": "p_ana7Qx2"},
        "pong": {},
        "key": {"from": "p_ana7Qx2", "payload": "Q0tUAg"},
        "answer": {"answer": {"type": "answer", "sdp": _SDP}},
        "offer": {"negotiation": 1, "offer": offer},
        "media_lost": {"message": "The media relay restarted."},
    }
    seeds = {kind: to_client(kind, **fields).encode() for kind, fields in messages.items()}
    seeds["welcome"] = _welcome([entry]).encode()
    return seeds


def signaling_envelope() -> Seeds:
    return {
        "ping": b'{"type":"ping"}',
        "no-type": b'{"kind":"ping"}',
        "not-object": b"[1,2,3]",
        "long-type": b'{"type":"' + b"x" * 40 + b'"}',
    }


def meet_command() -> Seeds:
    commands = [
        "@ana @ben Weekly sync lobby ttl=2h",
        "<@U123> <@U456|bea> <@!789> <@42> @cy Plan announce",
        '"Board review" @ana',
        "help",
        "list",
        "lock r00m_-id",
        "invite abc @ana <@U1>",
        "reissue abc <@U1|ana>",
        "join abc",
        "lokc abc",
        "@ana ttl=1h30m ttl=2h",
        "@ana 'unbalanced quote",
    ]
    return {f"command-{i}": c.encode() for i, c in enumerate(commands)}


def join_link() -> Seeds:
    secret = "S" * 43
    return {
        "link": f"https://meet.example.org/j/{_ROOM}#inv_1.{secret}".encode(),
        "link-prefix-port": f"<http://127.0.0.1:8080/conclave/j/{_ROOM}/#inv_1.{secret}>".encode(),
        "credential": f"inv_1.{secret}".encode(),
        "resume-token": _TOKEN.encode(),
        "no-key": f"https://meet.example.org/j/{_ROOM}".encode(),
    }


def _slack(body: str, timestamp: int = material.NOW, charset: str = "") -> bytes:
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(material.SLACK_SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return f"{timestamp}\nv0={digest}\n{charset}\n{body}".encode()


def slack_request() -> Seeds:
    body = "token=t&team_id=T0CONCLAVE&user_id=UHANA&command=%2Fmeet&text=%40ana+Sync"
    return {
        "signed": _slack(body),
        "signed-utf8-charset": _slack(body, charset="utf-8"),
        "stale": _slack(body, timestamp=material.NOW - 301),
        "unsigned": f"{material.NOW}\nv0=00\n\n{body}".encode(),
    }


BUILDERS: Final[dict[str, Callable[[], Seeds]]] = {
    "sframe_header": sframe_header,
    "sframe_decrypt": sframe_decrypt,
    "media_frame": media_frame,
    "key_transport": key_transport,
    "key_transport_signed": key_transport_signed,
    "roster": roster,
    "vp8_descriptor": vp8_descriptor,
    "relay_control": relay_control,
    "relay_ticket": relay_ticket,
    "signaling_envelope": signaling_envelope,
    "signaling_to_server": signaling_to_server,
    "signaling_to_client": signaling_to_client,
    "meet_command": meet_command,
    "join_link": join_link,
    "slack_request": slack_request,
}


def build(target: str) -> Seeds:
    """The seeds of ``target``, with the crash inputs kept as regressions."""
    from tests.fuzz.crashes import CRASHES

    seeds = BUILDERS[target]()
    for name, (crashed_target, data) in CRASHES.items():
        if crashed_target == target:
            seeds[f"regression-{name}"] = data
    return seeds


def main() -> None:
    for target in BUILDERS:
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink()
        for name, data in build(target).items():
            (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
