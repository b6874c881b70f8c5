"""The browser client and bot/e2ee understand each other: key messages sealed on one side open
on the other and the frames under those keys decrypt; announcements verify both ways; the same
roster gives the same security code; and a lying server's rosters and forged key messages are
refused by both, with the same sentence."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bot.e2ee.announce import KeyAnnouncement, announce
from bot.e2ee.errors import E2EEError, KeyTransportError
from bot.e2ee.identity import MeetingKeys, PublicKeys, RosterEntry
from bot.e2ee.kid import KeyId
from bot.e2ee.media import Codec, protect, unprotect
from bot.e2ee.roster import KeyBook, ShownEntry
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.senderkeys import SenderKey, SenderKeys
from bot.e2ee.suites import CipherSuite
from bot.e2ee.transport import (
    HPKE,
    Binding,
    KeyReceiver,
    assemble_message,
    message_from_text,
    message_to_text,
    seal_sender_key,
)
from tests.browser.conftest import E2EEPage, load_vectors

ROOM = "Yd3kQ9vX2mTq8LrPzW4sNa"
SUITE = CipherSuite.AES_128_GCM_SHA256_128
PROFILE = load_vectors("protocol_vectors.json")["sframe_profile"]
FRAMES = [(Codec(f["codec"]), bytes.fromhex(f["frame"])) for f in PROFILE["frames"]]


def _hex(keys: PublicKeys) -> list[str]:
    return [keys.x25519.hex(), keys.ed25519.hex()]


def _keys(pair: list[str]) -> PublicKeys:
    return PublicKeys(bytes.fromhex(pair[0]), bytes.fromhex(pair[1]))


async def test_a_python_sealed_key_opens_in_the_browser_and_its_frames_decrypt(
    e2ee: E2EEPage,
) -> None:
    ben = _keys(
        await e2ee.run(
            """
            globalThis.ben = await c.keys.MeetingKeys.generate();
            return [x(ben.public().x25519), x(ben.public().ed25519)];
            """
        )
    )
    ana = MeetingKeys.generate()
    ana_senders = SenderKeys(3)
    key = ana_senders.on_join(0.0)  # Ben is the newcomer: the ratcheted key is his
    message = seal_sender_key(
        key, room_id=ROOM, sender_id="p_ana", sender_keys=ana, recipient_id="p_ben", recipient=ben
    )
    protected = [
        protect(codec, frame, lambda m, p: ana_senders.encrypt(m, p, 2.0)).hex()
        for codec, frame in FRAMES
    ]
    got = await e2ee.run(
        """
        const receiver = new c.transport.KeyReceiver({
          roomId: arg.room, participantId: 'p_ben', keys: globalThis.ben });
        const ana = new c.keys.PublicKeys(h(arg.ana[0]), h(arg.ana[1]));
        const roster = new Map([['p_ana', new c.keys.RosterEntry('p_ana', 3, ana)]]);
        const key = await receiver.open(c.transport.messageFromText(arg.message), roster);
        const senders = await c.senderkeys.SenderKeys.create(5);
        await senders.addPeerKey(key, 2.0);
        const frames = [];
        for (const [codec, data] of arg.protected) {
          const open = (sframe, metadata) => senders.decrypt(sframe, metadata, 2.0);
          frames.push(x(await c.prefix.unprotect(codec, h(data), open)));
        }
        return { kid: key.kid.toString(16), base_key: x(key.baseKey), frames };
        """,
        {
            "room": ROOM,
            "ana": _hex(ana.public()),
            "message": message_to_text(message),
            "protected": [[c.value, p] for (c, _), p in zip(FRAMES, protected, strict=True)],
        },
    )
    assert got["kid"] == f"{KeyId(3, 0, 1).kid:x}"
    assert got["base_key"] == key.base_key.reveal().hex()
    assert got["frames"] == [frame.hex() for _, frame in FRAMES]


async def test_a_browser_sealed_key_opens_in_python_and_its_frames_decrypt(
    e2ee: E2EEPage,
) -> None:
    ben = MeetingKeys.generate()
    got = await e2ee.run(
        """
        const ana = await c.keys.MeetingKeys.generate();
        const senders = await c.senderkeys.SenderKeys.create(3);
        const key = await senders.onJoin(0.0);
        const message = await c.transport.sealSenderKey(key, {
          roomId: arg.room, senderId: 'p_ana', senderKeys: ana, recipientId: 'p_ben',
          recipient: new c.keys.PublicKeys(h(arg.ben[0]), h(arg.ben[1])) });
        const frames = [];
        for (const [codec, frame] of arg.frames) {
          const seal = (metadata, plaintext) => senders.encrypt(metadata, plaintext, 2.0);
          frames.push(x(await c.prefix.protect(codec, h(frame), seal)));
        }
        return { ana: [x(ana.public().x25519), x(ana.public().ed25519)],
                 message: c.transport.messageToText(message), frames,
                 base_key: x(key.baseKey) };
        """,
        {
            "room": ROOM,
            "ben": _hex(ben.public()),
            "frames": [[c.value, f.hex()] for c, f in FRAMES],
        },
    )
    receiver = KeyReceiver(room_id=ROOM, participant_id="p_ben", keys=ben)
    roster = {"p_ana": RosterEntry("p_ana", 3, _keys(got["ana"]))}
    key = receiver.open(message_from_text(got["message"]), roster)
    assert key.id == KeyId(3, 0, 1)
    assert key.base_key.reveal().hex() == got["base_key"]
    ben_senders = SenderKeys(5)
    ben_senders.add_peer_key(key, 2.0)
    opened = [
        unprotect(codec, bytes.fromhex(data), lambda s, m: ben_senders.decrypt(s, m, 2.0))
        for (codec, _), data in zip(FRAMES, got["frames"], strict=True)
    ]
    assert opened == [frame for _, frame in FRAMES]


async def test_announcements_verify_across_implementations(e2ee: E2EEPage) -> None:
    made_in_python = announce(MeetingKeys.generate(), ROOM, "p_ana", 3)
    got = await e2ee.run(
        """
        const keys = await c.keys.MeetingKeys.generate();
        const made = await c.announce.announce(keys, arg.room, 'p_ben', 4);
        const theirs = c.announce.KeyAnnouncement.fromJson(arg.python);
        const forged = c.announce.KeyAnnouncement.fromJson({ ...arg.python,
          x25519: made.toJson().x25519 });
        return {
          json: made.toJson(),
          python: await theirs.verifies(arg.room, 'p_ana', 3),
          python_other_id: await theirs.verifies(arg.room, 'p_ben', 3),
          python_other_index: await theirs.verifies(arg.room, 'p_ana', 4),
          python_swapped_x25519: await forged.verifies(arg.room, 'p_ana', 3),
        };
        """,
        {"room": ROOM, "python": made_in_python.to_json()},
    )
    assert got["python"] is True
    assert not any(
        got[k] for k in ("python_other_id", "python_other_index", "python_swapped_x25519")
    )
    made_in_browser = KeyAnnouncement.from_json(got["json"])
    assert made_in_browser.verifies(ROOM, "p_ben", 4)
    assert not made_in_browser.verifies(ROOM, "p_ben", 5)
    assert not made_in_browser.verifies("another-room", "p_ben", 4)


# --- rosters ---------------------------------------------------------------------------------

# Private bytes kept so that the browser can hold the same key pairs (Ben's, to receive).
PRIVATE = {name: (os.urandom(32), os.urandom(32)) for name in ("ana", "ben", "cy", "server")}
PEOPLE = {name: MeetingKeys.from_private_bytes(*keys) for name, keys in PRIVATE.items()}


def entry(
    pid: str, index: int, keys: str | None, *, signed_index: int | None = None
) -> dict[str, Any]:
    """A roster entry as the hub sends it; ``keys`` names whose key pairs announce it."""
    shown: dict[str, Any] = {"participant_id": pid, "sender_index": index, "name": pid[2:].title()}
    if keys is not None:
        signed = signed_index if signed_index is not None else index
        shown["keys"] = announce(PEOPLE[keys], ROOM, pid, signed).to_json()
    return shown


ANA, BEN, CY = entry("p_ana", 1, "ana"), entry("p_ben", 2, "ben"), entry("p_cy", 3, "cy")
BEN_SWAPPED_X25519 = {**BEN, "keys": {**BEN["keys"], "x25519": CY["keys"]["x25519"]}}

# name: (rosters shown one after the other to Ana's client, how the last one ends)
ROSTER_CASES: dict[str, tuple[list[list[dict[str, Any]]], str]] = {
    "complete": ([[ANA, BEN, CY]], "code"),
    "someone has not announced yet": ([[ANA, BEN, entry("p_cy", 3, None)]], "pending"),
    "a swapped X25519 key is only unusable": (
        [[ANA, BEN_SWAPPED_X25519, CY], [ANA, BEN, CY]],
        "code",
    ),
    "one participant twice": ([[ANA, BEN, BEN]], "keys_tampered"),
    "two participants with one index": (
        [[ANA, BEN, entry("p_cy", 2, "cy")]],
        "keys_tampered",
    ),
    "this device's entry with other keys": ([[entry("p_ana", 1, "server"), BEN]], "keys_tampered"),
    "this device's index on a peer": ([[BEN, entry("p_cy", 1, "cy")]], "keys_tampered"),
    "new keys for someone who never left": (
        [[ANA, BEN], [ANA, entry("p_ben", 2, "server")]],
        "keys_tampered",
    ),
    "new keys after a leave": ([[ANA, BEN], [ANA], [ANA, entry("p_ben", 2, "server")]], "code"),
    "an index reused after its owner left": (
        [[ANA, BEN], [ANA], [ANA, entry("p_cy", 2, "cy")]],
        "keys_tampered",
    ),
}


def views_in_python(rosters: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    book = KeyBook(ROOM, "p_ana", 1, PEOPLE["ana"].public())
    results: list[dict[str, Any]] = []
    for roster in rosters:
        try:
            view = book.view([ShownEntry.from_json(e) for e in roster])
        except E2EEError as error:
            results.append({"error": error.code, "message": str(error)})
            break
        results.append(
            {
                "code": view.code,
                "peers": sorted(view.peers),
                "waiting": list(view.waiting),
                "rejected": list(view.rejected),
            }
        )
    return results


@pytest.mark.parametrize("case", list(ROSTER_CASES))
async def test_rosters_are_judged_alike(e2ee: E2EEPage, case: str) -> None:
    rosters, ending = ROSTER_CASES[case]
    expected = views_in_python(rosters)
    got = await e2ee.run_file(
        "roster_views.js",
        {
            "room": ROOM,
            "me": "p_ana",
            "index": 1,
            "own": _hex(PEOPLE["ana"].public()),
            "rosters": rosters,
        },
    )
    assert got == expected
    last = expected[-1]
    if ending == "keys_tampered":
        assert last["error"] == "keys_tampered"
        assert last["message"].startswith("The server is tampering with the meeting's keys: ")
    else:
        assert (last["code"] is None) == (ending == "pending"), last
    if case == "new keys after a leave":
        assert expected[0]["code"] != expected[2]["code"]


async def test_the_same_roster_gives_the_same_security_code(e2ee: E2EEPage) -> None:
    """Ben's client in the browser and Ana's in Python, shown one roster, show one code."""
    ben = await e2ee.run(
        """
        globalThis.ben = await c.keys.MeetingKeys.generate();
        return (await c.announce.announce(globalThis.ben, arg, 'p_ben', 2)).toJson();
        """,
        ROOM,
    )
    roster = [ANA, {"participant_id": "p_ben", "sender_index": 2, "name": "Ben", "keys": ben}, CY]
    python = KeyBook(ROOM, "p_ana", 1, PEOPLE["ana"].public()).view(
        [ShownEntry.from_json(e) for e in roster]
    )
    browser = await e2ee.run(
        """
        const book = new c.roster.KeyBook(arg.room, 'p_ben', 2, globalThis.ben.public());
        const view = await book.view(arg.roster);
        return [view.code, [...view.peers.keys()]];
        """,
        {"room": ROOM, "roster": roster},
    )
    assert python.code is not None
    assert browser == [python.code, ["p_ana", "p_cy"]]


# --- key messages ----------------------------------------------------------------------------


def _key(generation: int, step: int, index: int = 3, size: int = 32) -> SenderKey:
    return SenderKey(KeyId(index, generation, step), SUITE, SecretKey(os.urandom(size)))


def _seal(key: SenderKey, **changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "room_id": ROOM,
        "sender_id": "p_ana",
        "sender_keys": PEOPLE["ana"],
        "recipient_id": "p_ben",
        "recipient": PEOPLE["ben"].public(),
        **changes,
    }
    return seal_sender_key(key, **fields)


def _sealed_raw(plaintext: bytes, *, flip_ct: bool = False) -> bytes:
    """A message signed by Ana whose HPKE plaintext or ciphertext is not what seal makes."""
    binding = Binding(ROOM, "p_ana", "p_ben", PEOPLE["ben"].public().x25519, SUITE, KeyId(3, 9, 0))
    sealed = bytearray(
        HPKE.encrypt(plaintext, PEOPLE["ben"].x25519.public_key(), binding.hpke_info())
    )
    if flip_ct:
        sealed[-1] ^= 1
    return assemble_message(binding, bytes(sealed), PEOPLE["ana"])


def _key_messages() -> list[tuple[str, str]]:
    good = _seal(_key(1, 0))
    ben_public = PEOPLE["ben"].public()
    return [
        (message_to_text(good), "ok"),
        (message_to_text(good), "replayed message"),
        (message_to_text(_seal(_key(0, 5))), "key older than the one held"),
        (message_to_text(_seal(_key(1, 1))), "ok"),
        (message_to_text(_seal(_key(2, 0), room_id="another-room")), "message for another room"),
        (message_to_text(_seal(_key(2, 0), recipient_id="p_cy")), "message for another recipient"),
        (
            message_to_text(
                _seal(
                    _key(2, 0),
                    recipient=PublicKeys(PEOPLE["server"].public().x25519, ben_public.ed25519),
                )
            ),
            "encrypted to a key that is not this client's",
        ),
        (
            message_to_text(_seal(_key(2, 0), sender_id="p_zed", sender_keys=PEOPLE["server"])),
            "sender not in the roster",
        ),
        (message_to_text(_seal(_key(2, 0, index=9))), "sender index does not match the roster"),
        (message_to_text(_seal(_key(2, 0), sender_keys=PEOPLE["server"])), "bad signature"),
        (message_to_text(good[:-1]), "truncated message"),
        (message_to_text(good + b"\x00"), "trailing bytes"),
        (message_to_text(b"CKT\x01" + good[4:]), "not a key message of this version"),
        (message_to_text(good + bytes(2049 - len(good))), "message too large"),
        ("Q0tU=", "not base64url"),
        (
            message_to_text(_sealed_raw(os.urandom(32), flip_ct=True)),
            "cannot be decrypted with this client's key",
        ),
        (message_to_text(_sealed_raw(os.urandom(16))), "base key of the wrong length"),
        (message_to_text(_seal(_key(2, 0))), "ok"),
    ]


def receive_in_python(messages: list[str], roster: dict[str, RosterEntry]) -> list[dict[str, str]]:
    receiver = KeyReceiver(room_id=ROOM, participant_id="p_ben", keys=PEOPLE["ben"])
    results = []
    for text in messages:
        try:
            key = receiver.open(message_from_text(text), roster)
        except KeyTransportError as error:
            results.append({"error": str(error)})
        else:
            results.append({"kid": f"{key.kid:x}", "base_key": key.base_key.reveal().hex()})
    return results


async def test_key_messages_are_judged_alike(e2ee: E2EEPage) -> None:
    """One receiver on each side opens the same messages, in order: the same keys come out and
    the same forgeries, misdirections, replays and stale keys are refused, for the same reason."""
    cases = _key_messages()
    ana = PEOPLE["ana"].public()
    expected = receive_in_python(
        [text for text, _ in cases], {"p_ana": RosterEntry("p_ana", 3, ana)}
    )
    for (_, outcome), result in zip(cases, expected, strict=True):
        if outcome == "ok":
            assert "kid" in result
        else:
            assert result == {"error": f"A media key message was rejected: {outcome}."}
    got = await e2ee.run_file(
        "key_receiver.js",
        {
            "room": ROOM,
            "me": "p_ben",
            "privateKeys": [k.hex() for k in PRIVATE["ben"]],
            "roster": [["p_ana", 3, ana.x25519.hex(), ana.ed25519.hex()]],
            "messages": [text for text, _ in cases],
        },
    )
    assert got == expected


async def test_a_key_for_another_cipher_suite_is_refused_by_name(e2ee: E2EEPage) -> None:
    """bot/e2ee parses keys of every RFC 9605 suite (its sender keys then refuse them); the
    browser implements 0x0004 only and says so as soon as it reads the suite."""
    key = SenderKey(
        KeyId(3, 0, 0), CipherSuite.AES_128_CTR_HMAC_SHA256_80, SecretKey(os.urandom(32))
    )
    got = await e2ee.run(
        """
        try { c.transport.parseMessage(c.transport.messageFromText(arg)); return 'parsed'; }
        catch (e) { return e.message; }
        """,
        message_to_text(_seal(key)),
    )
    assert got == "A media key message was rejected: cipher suite 0x0001 is not supported."
