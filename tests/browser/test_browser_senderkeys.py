"""The browser client's sender keys behave exactly as bot/e2ee/senderkeys.py: one scenario of
joins, leaves, key deliveries and frames, played on both with the same random keys, gives the
same keys, byte-identical protected frames and the same accepted and refused frames."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from bot.e2ee.errors import E2EEError
from bot.e2ee.header import encode_header
from bot.e2ee.kid import KeyId
from bot.e2ee.media import Codec, protect, unprotect
from bot.e2ee.senderkeys import SenderKey, SenderKeys
from tests.browser.conftest import E2EEPage, load_vectors

PROFILE = load_vectors("protocol_vectors.json")["sframe_profile"]
FRAMES = {f["name"]: f["frame"] for f in PROFILE["frames"]}
KEY_FRAME, DELTA, OPUS = FRAMES["vp8 key frame"], FRAMES["vp8 delta frame"], FRAMES["opus frame"]
# A frame whose KID claims a far ratchet step of Ana's newest generation: a forgery.
FORGED = "310a00" + (encode_header(KeyId(1, 2, 5).kid, 0) + bytes(20)).hex()


def _pool(name: str) -> list[str]:
    return [hashlib.sha256(f"{name} key {i}".encode()).hexdigest() for i in range(8)]


POOLS = {"ana": [1, _pool("ana")], "ben": [2, _pool("ben")]}

# (op, who, *args); a key or frame an op makes is referred to later by the op's position.
# Activation delay 1 s, grace period 10 s (the defaults).
SCENARIO: list[list[Any]] = [
    ["current", "ana"],  # 0: generation 0, step 0
    ["current", "ben"],  # 1
    ["give", "ben", 0, 0.0],  # 2
    ["give", "ana", 1, 0.0],  # 3
    ["send", "ana", 0.1, "vp8", KEY_FRAME],  # 4
    ["receive", "ben", 0.1, "vp8", 4],  # 5: decrypts
    ["receive", "ben", 0.2, "vp8", 4],  # 6: replayed
    ["join", "ana", 0.5],  # 7: step 1, in use at 1.5
    ["send", "ana", 1.0, "opus", OPUS],  # 8: still step 0
    ["leave", "ana", 1.2],  # 9: generation 1 replaces the pending step 1, keeps its deadline
    ["latest", "ana"],  # 10
    ["send", "ana", 1.4, "vp8", DELTA],  # 11: still generation 0
    ["send", "ana", 1.5, "vp8", DELTA],  # 12: generation 1, at the first deadline
    ["receive", "ben", 1.5, "vp8", 12],  # 13: Ben has no generation 1 yet
    ["give", "ben", 9, 1.6],  # 14
    ["receive", "ben", 1.6, "vp8", 12],  # 15
    ["receive", "ben", 1.7, "vp8", 11],  # 16: the old key, within its grace period
    ["give", "ben", 9, 1.8],  # 17: the same key again is fine
    ["give", "ben", 7, 1.8],  # 18: an older key is refused
    ["give", "ana", 0, 1.8],  # 19: a key with Ana's own index is refused
    ["join", "ana", 2.0],  # 20: generation 1 step 1
    ["send", "ana", 3.0, "opus", OPUS],  # 21
    ["receive", "ben", 3.0, "opus", 21],  # 22: Ben follows the ratchet by himself
    ["held", "ben"],  # 23
    ["receive", "ben", 12.0, "opus", 8],  # 24: generation 0 is gone after its grace period
    ["held", "ben"],  # 25
    ["join", "ana", 20.0],  # 26: generation 1 step 2, due at 21
    ["leave", "ana", 22.0],  # 27: step 2 goes into use first, then generation 2 waits 1 s
    ["send", "ana", 22.5, "vp8", KEY_FRAME],  # 28: generation 1 step 2
    ["give", "ben", 27, 22.6],  # 29
    ["receive", "ben", 22.7, "vp8", 28],  # 30: a step of an older generation, followed
    ["send", "ana", 23.0, "vp8", DELTA],  # 31: generation 2
    ["receive", "ben", 23.0, "vp8", 31],  # 32
    ["held", "ben"],  # 33
    ["receive_bytes", "ben", 23.5, "vp8", FORGED],  # 34: fails, and leaves nothing behind
    ["held", "ben"],  # 35
    ["tick", "ben", 40.0],  # 36
    ["held", "ben"],  # 37: only generation 2 is left
    ["remove", "ben", 1],  # 38: Ana left
    ["held", "ben"],  # 39
    ["receive", "ben", 40.0, "vp8", 31],  # 40
    ["restart", "ana", 41.0],  # 41: back after a drop: generation 3, in use at once
    ["send", "ana", 41.0, "opus", OPUS],  # 42: generation 3 already
]


def _id_of(key: SenderKey) -> list[int]:
    return [key.id.sender_index, key.id.generation, key.id.ratchet_step]


def _play(keys: SenderKeys, op: str, args: list[Any], kept: list[Any]) -> tuple[Any, Any]:
    """One op: (its result, the key or frame it made, if any)."""
    if op == "current":
        return _id_of(keys.current_key), keys.current_key
    if op in ("join", "leave", "restart"):
        rotate = {"join": keys.on_join, "leave": keys.on_leave, "restart": keys.restart}[op]
        key = rotate(args[0])
        return _id_of(key), key
    if op == "give":
        keys.add_peer_key(kept[args[0]], args[1])
        return "ok", None
    if op == "send":
        t, codec, frame = args
        made = protect(Codec(codec), bytes.fromhex(frame), lambda m, p: keys.encrypt(m, p, t))
        return made.hex(), made
    if op in ("receive", "receive_bytes"):
        t, codec, data = args
        frame = kept[data] if op == "receive" else bytes.fromhex(data)
        return unprotect(Codec(codec), frame, lambda s, m: keys.decrypt(s, m, t)).hex(), None
    if op == "tick":
        keys.tick(args[0])
        return "ok", None
    if op == "remove":
        keys.remove_peer(args[0])
        return "ok", None
    if op == "held":
        return [f"{kid:x}" for kid in sorted(keys.held_kids())], None
    assert op == "latest", op
    return _id_of(keys.latest_key), None


def _drawing_from(pool: list[bytes]) -> Callable[[int], bytes]:
    """A "random" source that gives the pool's keys in order, as the JS side's does."""
    return lambda n: pool.pop(0)


def play_in_python(pools: dict[str, list[Any]], ops: list[list[Any]]) -> list[Any]:
    """The same interpreter as senderkeys_scenario.js, on bot/e2ee."""
    people = {
        name: SenderKeys(index, random_bytes=_drawing_from([bytes.fromhex(k) for k in keys]))
        for name, (index, keys) in pools.items()
    }
    kept: list[Any] = []
    results: list[Any] = []
    for op, who, *args in ops:
        made: Any = None
        try:
            result, made = _play(people[who], op, args, kept)
        except E2EEError as error:
            result = {"error": error.code}
        kept.append(made)
        results.append(result)
    return results


async def test_the_browser_plays_the_scenario_exactly_as_python(e2ee: E2EEPage) -> None:
    expected = play_in_python(POOLS, SCENARIO)
    got = await e2ee.run_file("senderkeys_scenario.js", {"pools": POOLS, "ops": SCENARIO})
    for i, (op, theirs, ours) in enumerate(zip(SCENARIO, got, expected, strict=True)):
        assert theirs == ours, f"op {i} {op[:3]}"


def test_the_scenario_exercises_what_it_says() -> None:
    """The scenario's expectations, read from the Python run: so that equal results cannot
    mean both sides agree on doing nothing."""
    r = play_in_python(POOLS, SCENARIO)
    refused = {"error": "sframe_error"}
    assert r[5] == KEY_FRAME and r[6] == refused
    assert r[9] == [1, 1, 0] and r[10] == [1, 1, 0]
    # The pending key's deadline (0.5 + 1) held although a newer key replaced it at 1.2.
    assert r[11][6:].startswith(encode_header(KeyId(1, 0, 0).kid, 2).hex())
    assert r[12][6:].startswith(encode_header(KeyId(1, 1, 0).kid, 0).hex())
    assert r[13] == refused and r[15] == DELTA and r[16] == DELTA
    assert r[17] == "ok"
    assert r[18] == {"error": "stale_sender_key"} and r[19] == {"error": "key_conflict"}
    assert r[22] == OPUS and r[24] == refused
    assert r[30] == KEY_FRAME and r[32] == DELTA
    assert r[34] == refused and r[35] == r[33]
    assert r[37] == ["20000000001"]
    assert r[39] == [] and r[40] == refused
    assert r[41] == [1, 3, 0]
    assert r[42].startswith(encode_header(KeyId(1, 3, 0).kid, 0).hex())
