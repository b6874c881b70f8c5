"""The core's side of the relay control channel: authenticates workers, assigns each room to
the least-loaded one, and carries the hub's media requests to it.

Workers connect to ``/relay`` (see docs/PROTOCOL.md, "Relay control channel"); a worker is
either a local process that ``conclave run`` starts or a ``conclave relay`` on another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bot.errors import ConclaveError, ProtocolError
from bot.metrics import WorkerLoad, WorkerTraffic
from bot.relay import control
from bot.relay.offers import MediaRefused
from bot.relay.refusals import NotJoined
from bot.relay.tickets import HEADER as TICKET_HEADER
from bot.relay.tickets import BadTicket, NonceCache, answer_worker_ticket
from bot.secret import Secret
from bot.signaling.relay_port import (
    Joined,
    LostListener,
    OfferListener,
    PeerGone,
    PeerLostListener,
    RelayUnavailable,
)

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0
READY_TIMEOUT = 10.0


@dataclass(eq=False)
class WorkerLink:
    worker_id: str
    ws: web.WebSocketResponse
    rooms: int = 0
    participants: int = 0
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)


class RelayPool:
    """Implements ``MediaRelay`` over every connected worker."""

    def __init__(self, secret: Secret) -> None:
        self._secret = secret
        self._nonces = NonceCache()
        self._workers: dict[str, WorkerLink] = {}
        self._rooms: dict[str, WorkerLink] = {}
        # Rooms assigned but not yet reported in the worker's load, so that a burst of new
        # rooms spreads out instead of all landing on the worker that looked idle.
        self._assigned: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._listeners: list[OfferListener] = []
        self._lost_listeners: list[LostListener] = []
        self._peer_lost_listeners: list[PeerLostListener] = []
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- MediaRelay ----------------------------------------------------------------------

    def on_offer(self, listener: OfferListener) -> None:
        self._listeners.append(listener)

    def on_lost(self, listener: LostListener) -> None:
        self._lost_listeners.append(listener)

    def on_peer_lost(self, listener: PeerLostListener) -> None:
        self._peer_lost_listeners.append(listener)

    async def join(self, room_id: str, participant_id: str, offer: dict[str, Any]) -> Joined:
        worker = self._assign(room_id)
        result = await self._request(
            worker, control.JOIN, room=room_id, participant=participant_id, offer=offer
        )
        answer = result.get("answer")
        if not isinstance(answer, dict):
            raise RelayUnavailable("The media relay sent no answer.")
        # The worker names the connection by this request's id if it dies (``peer_lost``);
        # request ids are never reused, so no other connection can answer to it.
        return Joined(answer, result["id"])

    async def answer(
        self, room_id: str, participant_id: str, negotiation: int, answer: dict[str, Any]
    ) -> None:
        worker = self._rooms.get(room_id)
        if worker is None:
            raise RelayUnavailable("This room has no media relay.")
        await self._request(
            worker,
            control.ANSWER,
            room=room_id,
            participant=participant_id,
            negotiation=negotiation,
            answer=answer,
        )

    async def leave(self, room_id: str, participant_id: str) -> None:
        worker = self._rooms.get(room_id)
        if worker is not None:
            await self._request(worker, control.LEAVE, room=room_id, participant=participant_id)

    async def close_room(self, room_id: str) -> None:
        worker = self._rooms.pop(room_id, None)
        if worker is not None:
            await self._request(worker, control.CLOSE_ROOM, room=room_id)

    # --- workers -------------------------------------------------------------------------

    def worker_ids(self) -> list[str]:
        return sorted(self._workers)

    def loads(self) -> list[WorkerLoad]:
        """Each ready worker's load, as it last reported it."""
        return [WorkerLoad(w.worker_id, w.rooms, w.participants) for w in self._workers.values()]

    async def traffic(self, within: float) -> list[WorkerTraffic]:
        """Each ready worker's packet counters, asked for now; a worker that does not answer
        within ``within`` seconds, or answers with something else than counts, is left out."""
        workers = list(self._workers.values())
        answers = await asyncio.gather(
            *(asyncio.wait_for(self._request(w, control.STATS), within) for w in workers),
            return_exceptions=True,
        )
        counted = []
        for worker, answer in zip(workers, answers, strict=True):
            counts = None if isinstance(answer, BaseException) else _traffic_counts(answer)
            if counts is None:
                log.warning("relay worker %s sent no packet counters", worker.worker_id)
            else:
                counted.append(WorkerTraffic(worker.worker_id, *counts))
        return counted

    def room_worker(self, room_id: str) -> str | None:
        worker = self._rooms.get(room_id)
        return None if worker is None else worker.worker_id

    async def wait_for_workers(self, count: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while len(self._workers) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def _assign(self, room_id: str) -> WorkerLink:
        worker = self._rooms.get(room_id)
        if worker is not None and self._workers.get(worker.worker_id) is worker:
            return worker
        if not self._workers:
            raise RelayUnavailable()
        worker = min(
            self._workers.values(),
            key=lambda w: (w.participants, w.rooms + self._assigned.get(w.worker_id, 0)),
        )
        self._rooms[room_id] = worker
        self._assigned[worker.worker_id] = self._assigned.get(worker.worker_id, 0) + 1
        log.info("room %s assigned to relay worker %s", room_id, worker.worker_id)
        return worker

    async def _request(self, worker: WorkerLink, kind: str, **fields: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = future
        try:
            await worker.ws.send_str(control.encode(kind, id=request_id, **fields))
            result = await asyncio.wait_for(future, REQUEST_TIMEOUT)
        except (ConnectionError, TimeoutError):
            raise RelayUnavailable("The media relay did not answer.") from None
        finally:
            worker.pending.pop(request_id, None)
        if not result.get("ok"):
            error = str(result.get("error", "no reason"))
            if result.get("code") == MediaRefused.code:
                raise MediaRefused(error)  # the offer, not the relay: retrying will not help
            if result.get("code") == NotJoined.code:
                raise PeerGone(f"The media relay refused: {error}")
            raise RelayUnavailable(f"The media relay refused: {error}")
        return result

    async def handle_worker(self, request: web.Request) -> web.StreamResponse:
        try:
            worker_id, answer = answer_worker_ticket(
                self._secret, request.headers.get(TICKET_HEADER, ""), time.time(), self._nonces
            )
        except BadTicket:
            log.warning("refused a relay worker with a bad ticket from %s", request.remote)
            raise web.HTTPUnauthorized(text="bad relay ticket") from None
        ws = web.WebSocketResponse(
            max_msg_size=control.MAX_MESSAGE_BYTES, heartbeat=control.HEARTBEAT_SECONDS
        )
        await ws.prepare(request)
        await ws.send_str(control.encode(control.WELCOME, ticket=answer))
        link = WorkerLink(worker_id=worker_id, ws=ws)
        try:
            await self._serve_worker(link)
        finally:
            await self._drop_worker(link)
        return ws

    async def _serve_worker(self, link: WorkerLink) -> None:
        ready = False
        while True:
            try:
                msg = await link.ws.receive(timeout=None if ready else READY_TIMEOUT)
            except TimeoutError:
                log.warning("relay worker %s never became ready", link.worker_id)
                return
            if msg.type != WSMsgType.TEXT:
                return
            try:
                message = control.decode(msg.data, control.TO_CORE)
            except ProtocolError as err:
                log.warning("relay worker %s sent a bad message: %s", link.worker_id, err)
                continue
            kind = message["type"]
            if kind == control.READY and not ready:
                ready = True
                old = self._workers.get(link.worker_id)
                if old is not None:
                    await old.ws.close()
                self._workers[link.worker_id] = link
                self._changed.set()
                log.info("relay worker %s is ready", link.worker_id)
            if kind in (control.READY, control.LOAD):
                link.rooms = message["rooms"]
                link.participants = message["participants"]
                self._assigned.pop(link.worker_id, None)
            elif kind == control.RESULT:
                future = link.pending.get(message["id"])
                if future is not None and not future.done():
                    future.set_result(message)
            elif kind in (control.OFFER, control.PEER_LOST):
                if self._rooms.get(message["room"]) is not link:
                    # A worker speaks only for the rooms assigned to it: anything else would
                    # let one worker renegotiate or drop media of participants it does not carry.
                    log.warning(
                        "relay worker %s sent %s for room %s, which it does not serve",
                        link.worker_id,
                        kind,
                        message["room"],
                    )
                elif kind == control.PEER_LOST:
                    # Awaited, so that the hub hears of it in order with the join results.
                    await self._dispatch_peer_lost(message)
                else:
                    # Not awaited: the hub may hold an offer until the client has the answer
                    # to its own offer, and that answer may be waiting on this very reader.
                    task = asyncio.create_task(self._dispatch_offer(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            elif kind == control.ERROR:
                log.warning("relay worker %s reported: %s", link.worker_id, message.get("message"))
                request_id = message.get("id")
                future = link.pending.get(request_id) if isinstance(request_id, int) else None
                if future is not None and not future.done():
                    future.set_result({"ok": False, "error": message["message"]})

    async def _dispatch_offer(self, message: dict[str, Any]) -> None:
        # control.decode has checked the fields' presence and types.
        room, participant = message["room"], message["participant"]
        negotiation, offer = message["negotiation"], message["offer"]
        for listener in self._listeners:
            try:
                await listener(room, participant, negotiation, offer)
            except ConclaveError:
                log.warning("could not forward a relay offer to %s", participant)

    async def _dispatch_peer_lost(self, message: dict[str, Any]) -> None:
        room, participant, join_id = message["room"], message["participant"], message["join_id"]
        for listener in self._peer_lost_listeners:
            try:
                await listener(room, participant, join_id)
            except Exception:
                log.exception("could not tell %s its media connection was lost", participant)

    async def _drop_worker(self, link: WorkerLink) -> None:
        if self._workers.get(link.worker_id) is link:
            del self._workers[link.worker_id]
            self._changed.set()
            log.warning("relay worker %s disconnected", link.worker_id)
        lost = [room_id for room_id, worker in self._rooms.items() if worker is link]
        for room_id in lost:
            del self._rooms[room_id]
        for future in link.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("relay worker gone"))
        for room_id in lost:
            for listener in self._lost_listeners:
                try:
                    await listener(room_id)
                except Exception:
                    log.exception("could not tell room %s its relay is gone", room_id)


_TRAFFIC_FIELDS = (
    "received_packets",
    "forwarded_packets",
    "forwarded_bytes",
    "foreign_packets",
    "rate_limited_packets",
    "late_packets",
    "rss_bytes",
)


def _traffic_counts(result: dict[str, Any]) -> list[int] | None:
    """A ``stats`` answer's counts in ``WorkerTraffic`` order; None unless all are there."""
    counts = []
    for name in _TRAFFIC_FIELDS:
        value = result.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        counts.append(value)
    return counts
