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
from bot.e2ee.senderkeys import SenderKey, SenderKeys, frame_key_id
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
    ["join", "ana", 0.5],  # 7: step 1, nothing pending: in use at once
    ["send", "ana", 0.5, "opus", OPUS],  # 8: step 1 already
    ["receive", "ben", 0.5, "opus", 8],  # 9: Ben follows the ratchet by himself
    ["leave", "ana", 1.2],  # 10: generation 1, pending until 2.2
    ["join", "ana", 1.5],  # 11: generation 1 step 1 replaces the pending key, keeps its deadline
    ["latest", "ana"],  # 12
    ["send", "ana", 2.1, "vp8", DELTA],  # 13: still generation 0 step 1
    ["send", "ana", 2.2, "vp8", DELTA],  # 14: generation 1 step 1, at the leave's deadline
    ["receive", "ben", 2.2, "vp8", 14],  # 15: Ben has no generation 1 yet
    ["give", "ben", 10, 2.3],  # 16: generation 1 step 0, as the leave sent it
    ["receive", "ben", 2.3, "vp8", 14],  # 17: followed from step 0
    ["receive", "ben", 2.4, "vp8", 13],  # 18: the old key, within its grace period
    ["give", "ben", 11, 2.5],  # 19: the very key he followed to is fine
    ["give", "ben", 10, 2.5],  # 20: an older key is refused
    ["give", "ana", 0, 2.5],  # 21: a key with Ana's own index is refused
    ["join", "ana", 3.0],  # 22: generation 1 step 2, at once
    ["send", "ana", 3.0, "opus", OPUS],  # 23
    ["receive", "ben", 3.0, "opus", 23],  # 24
    ["held", "ben"],  # 25
    ["receive", "ben", 13.0, "opus", 8],  # 26: generation 0 is gone after its grace period
    ["held", "ben"],  # 27
    ["join", "ana", 20.0],  # 28: generation 1 step 3, at once
    ["leave", "ana", 22.0],  # 29: generation 2 waits 1 s; step 3 stays in use
    ["send", "ana", 22.5, "vp8", KEY_FRAME],  # 30: generation 1 step 3
    ["give", "ben", 29, 22.6],  # 31
    ["receive", "ben", 22.7, "vp8", 30],  # 32: a step of an older generation, followed
    ["send", "ana", 23.0, "vp8", DELTA],  # 33: generation 2
    ["receive", "ben", 23.0, "vp8", 33],  # 34
    ["held", "ben"],  # 35
    ["receive_bytes", "ben", 23.5, "vp8", FORGED],  # 36: fails, and leaves nothing behind
    ["held", "ben"],  # 37
    ["leave", "ana", 30.0],  # 38: generation 3, due at 31; no frame or tick until 32
    ["give", "ben", 38, 30.0],  # 39
    ["join", "ana", 32.0],  # 40: generation 3 is in use by then: its step 1, at once
    ["send", "ana", 32.0, "opus", OPUS],  # 41
    ["receive", "ben", 32.0, "opus", 41],  # 42
    ["tick", "ben", 45.0],  # 43
    ["held", "ben"],  # 44: only generation 3 step 1 is left
    ["remove", "ben", 1],  # 45: Ana left
    ["held", "ben"],  # 46
    ["receive", "ben", 45.0, "vp8", 33],  # 47
    ["restart", "ana", 46.0],  # 48: back after a drop: generation 4, in use at once
    ["send", "ana", 46.0, "opus", OPUS],  # 49: generation 4 already
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


def _kid_of(protected: str, clear_prefix: int) -> KeyId:
    return frame_key_id(bytes.fromhex(protected)[clear_prefix:])


def test_the_scenario_exercises_what_it_says() -> None:
    """The scenario's expectations, read from the Python run: so that equal results cannot
    mean both sides agree on doing nothing."""
    r = play_in_python(POOLS, SCENARIO)
    refused = {"error": "sframe_error"}
    assert r[5] == KEY_FRAME and r[6] == refused
    # A join with nothing pending: the very next frame uses the ratchet, and Ben follows it.
    assert r[7] == [1, 0, 1] and _kid_of(r[8], 0) == KeyId(1, 0, 1) and r[9] == OPUS
    # A join while a leave's key is pending ratchets that key and keeps its deadline (1.2 + 1).
    assert r[10] == [1, 1, 0] and r[11] == [1, 1, 1] and r[12] == [1, 1, 1]
    assert _kid_of(r[13], 3) == KeyId(1, 0, 1) and _kid_of(r[14], 3) == KeyId(1, 1, 1)
    assert r[15] == refused and r[17] == DELTA and r[18] == DELTA
    assert r[19] == "ok"
    assert r[20] == {"error": "stale_sender_key"} and r[21] == {"error": "key_conflict"}
    assert r[22] == [1, 1, 2] and _kid_of(r[23], 0) == KeyId(1, 1, 2)
    assert r[24] == OPUS and r[26] == refused
    assert r[28] == [1, 1, 3] and r[29] == [1, 2, 0]
    assert _kid_of(r[30], 10) == KeyId(1, 1, 3) and r[32] == KEY_FRAME
    assert _kid_of(r[33], 3) == KeyId(1, 2, 0) and r[34] == DELTA
    assert r[36] == refused and r[37] == r[35]
    # A join after a pending key's deadline: that key is in use, and its ratchet at once.
    assert r[38] == [1, 3, 0] and r[40] == [1, 3, 1]
    assert _kid_of(r[41], 0) == KeyId(1, 3, 1) and r[42] == OPUS
    assert r[44] == [f"{KeyId(1, 3, 1).kid:x}"]
    assert r[46] == [] and r[47] == refused
    assert r[48] == [1, 4, 0] and _kid_of(r[49], 0) == KeyId(1, 4, 0)
