"""A relay worker notices a participant's peer connection dying without the core asking.

The worker is in this process (so the test sees its relay), the core is ``relay_fakes.FakeCore``
and the participants are real aiortc peers. One of them closes its connection abruptly (aiortc
sends a DTLS close, nothing is said on the control channel): the worker must drop its media
state, renegotiate the others, report ``peer_lost`` naming that connection's ``join`` request,
and take the participant's next ``join``. A loss that races the core's own ``leave`` must never
touch the participant's next connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.relay import control
from tests.relay.relay_fakes import FakeClient, FakeCore, eventually, stopped
from tests.relay.test_hostile_publisher import StartWorker

# A fixture: a fake core and an in-process worker whose relay the test can look at. Tests name
# it as a parameter, which ruff takes for a redefinition (F811).
from tests.relay.test_hostile_publisher import worker as in_process_worker  # noqa: F401

KINDS = ("video", "audio")


def receiving(sub: FakeClient, pub: str) -> bool:
    """``sub`` decodes ``pub``'s video and audio on lines that carry them now."""
    got = [sub.received.get((pub, kind)) for kind in KINDS]
    return all(g is not None and g.decoded >= 10 and not stopped(sub, g) for g in got)


def events(core: FakeCore, kind: str) -> list[dict[str, Any]]:
    return [m for m in core.from_worker if m["type"] == kind]


def join_id_of(core: FakeCore, participant: str) -> int:
    """The id of the latest ``join`` the core sent for ``participant``."""
    joins = [
        m for m in core.sent_to_worker if m["type"] == "join" and m["participant"] == participant
    ]
    value = joins[-1]["id"]
    assert isinstance(value, int)
    return value


async def test_a_connection_its_peer_closes_is_dropped_reported_and_rejoined(
    in_process_worker: StartWorker,  # noqa: F811
) -> None:
    core, relay = await in_process_worker()
    ana, ben = FakeClient("ana"), FakeClient("ben")
    await core.join("r1", ana)
    await core.join("r1", ben)
    await eventually(lambda: receiving(ben, "ana") and receiving(ana, "ben"), "media both ways")
    first_join = join_id_of(core, "ana")
    from_ana = [ben.received[("ana", kind)] for kind in KINDS]

    # ana's connection goes away; the core asks nothing of the worker.
    await ana.pc.close()
    await eventually(lambda: bool(events(core, control.PEER_LOST)), "the worker reports it")
    assert events(core, control.PEER_LOST) == [
        {"type": "peer_lost", "room": "r1", "participant": "ana", "join_id": first_join}
    ]
    assert relay.participants == 1
    lost_at = core.from_worker.index(events(core, control.PEER_LOST)[0])
    load = {"type": "load", "rooms": 1, "participants": 1}
    await eventually(lambda: load in core.from_worker[lost_at:], "the new load reported")
    assert not any(m["type"] == "leave" for m in core.sent_to_worker)
    # ben was re-offered without ana's tracks: their lines go inactive for him.
    await eventually(lambda: all(stopped(ben, g) for g in from_ana if g), "ana's tracks end")

    # ana publishes again on a new connection: the worker takes it, and media flows again.
    again = FakeClient("ana")
    await core.join("r1", again)  # asserts the join is accepted
    await eventually(lambda: receiving(ben, "ana") and receiving(again, "ben"), "media again")
    assert relay.participants == 2
    assert len(events(core, control.PEER_LOST)) == 1


async def test_a_loss_racing_the_cores_leave_never_touches_the_next_connection(
    in_process_worker: StartWorker,  # noqa: F811
) -> None:
    """Whichever the worker hears of first, the peer's close or the core's ``leave`` a moment
    later, the participant's next connection is left alone and no report names it."""
    core, relay = await in_process_worker()
    ben = FakeClient("ben")
    await core.join("r1", ben)
    joins: list[int] = []
    for delay in (0.0, 0.02, 1.0):
        ana = FakeClient("ana")
        await core.join("r1", ana)
        joins.append(join_id_of(core, "ana"))
        await eventually(lambda: receiving(ben, "ana"), "ben receives ana")
        await ana.pc.close()
        await asyncio.sleep(delay)
        # ok, or not_joined when the worker had already dropped her
        await core.request("leave", room="r1", participant="ana")
        await ana.close()
    last = FakeClient("ana")
    await core.join("r1", last)
    await eventually(lambda: receiving(ben, "ana") and receiving(last, "ben"), "media again")
    await asyncio.sleep(1.0)  # for any report still on its way

    reported = [m["join_id"] for m in events(core, control.PEER_LOST)]
    assert joins[-1] in reported, "a close a second before the leave went unreported"
    assert set(reported) <= set(joins) and len(reported) == len(set(reported))
    assert relay.peer("r1", "ana").join_id == join_id_of(core, "ana")
    assert relay.participants == 2
    await eventually(lambda: receiving(ben, "ana"), "ben still receives ana")


async def test_a_renegotiation_of_a_connection_that_is_closing_ends_quietly(
    in_process_worker: StartWorker,  # noqa: F811
) -> None:
    """aiortc refuses an offer from the moment a connection's close() begins, before the state
    change that drops the participant: a renegotiation started in that window must end
    without an error (it was an unretrieved task exception, logged with its traceback)."""
    core, relay = await in_process_worker()
    ana, ben = FakeClient("ana"), FakeClient("ben")
    await core.join("r1", ana)
    await core.join("r1", ben)
    await eventually(lambda: receiving(ben, "ana"), "ben receives ana")
    peer = relay.peer("r1", "ben")
    closing = asyncio.create_task(peer.pc.close())
    await asyncio.sleep(0)  # close() has begun; its transceivers are stopping
    assert peer.pc.connectionState != "closed" and not peer.closed
    relay._renegotiate(peer)  # what a membership change in the room does
    negotiator = peer.negotiator
    assert negotiator is not None
    await asyncio.gather(negotiator, return_exceptions=True)
    assert negotiator.exception() is None
    await closing
    await eventually(lambda: bool(events(core, control.PEER_LOST)), "the loss is reported")
