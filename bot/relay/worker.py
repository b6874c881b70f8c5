"""The relay worker process: connects to the core's control websocket and runs the relay.

The worker dials out (so it can run behind NAT on another host), proves the shared secret with
a ticket, checks the core's welcome ticket, then serves requests until the connection drops,
and dials again with backoff until ``stop`` is set. Peer connections do not outlive the control
connection: the core forgets the worker's rooms when it goes, so the worker closes them too and
reports ready with no rooms after reconnecting. A peer connection that dies without the core
asking (``sfu``) is reported with ``peer_lost``, naming the ``join`` request that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import resource
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiortc import RTCPeerConnection

from bot.config import RelaySettings
from bot.errors import ConclaveError, ProtocolError
from bot.ice_servers import ice_servers_for
from bot.relay import control
from bot.relay.public_address import advertise
from bot.relay.refusals import RelayError
from bot.relay.sfu import DEFAULT_MAX_PACKET_RATE, Relay
from bot.relay.tickets import HEADER, BadTicket, make_worker_ticket, verify_core_ticket
from bot.rtc.internals import bind_ports, check_internals, restrict_host_addresses
from bot.rtc.peer import make_peer_connection
from bot.secret import Secret

log = logging.getLogger(__name__)

WELCOME_TIMEOUT_SECONDS: Final = 10.0
FIRST_RETRY_SECONDS: Final = 0.5
MAX_RETRY_SECONDS: Final = 15.0
# aiohttp would close the connection over its own limit; a larger one lets control.decode
# answer an oversized message with an error and keep the connection, as the protocol says.
_TRANSPORT_MAX_BYTES: Final = 4 * control.MAX_MESSAGE_BYTES


def control_url(core_url: str) -> str:
    """``http(s)://host:port[/prefix]`` to ``ws(s)://host:port[/prefix]/relay``."""
    parts = urlsplit(core_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ConclaveError(f"The core URL must be http(s)://host:port, not {core_url!r}.")
    path = parts.path.rstrip("/") + control.ROUTE
    return urlunsplit((scheme, parts.netloc, path, "", ""))


async def run_worker(
    core_url: str,
    worker_id: str,
    settings: RelaySettings,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the core at ``core_url`` until ``stop`` is set, reconnecting when the link drops.

    ``settings`` gives the shared secret, the ICE servers of every peer connection (with TURN
    credentials minted for this worker when ``turn_secret`` is set), the host addresses ICE
    offers, the UDP ports their sockets bind (``udp_port_range``, process-wide like the
    addresses), the public address the descriptions also name, and ``max_packet_rate``: SRTP
    and SRTCP packets a second each participant may send; more are dropped before decryption.
    """
    check_internals()
    restrict_host_addresses(settings.host_addresses)
    bind_ports(settings.ports)
    url = control_url(core_url)
    stop = stop or asyncio.Event()

    def make_pc() -> RTCPeerConnection:
        return make_peer_connection(servers=ice_servers_for(settings, worker_id, time.time()))

    retry = FIRST_RETRY_SECONDS
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            session = WorkerSession(
                settings.secret,
                worker_id,
                make_pc,
                settings.max_packet_rate,
                public_address=settings.public_address,
            )
            try:
                await session.serve(http, url, stop)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    log.error(
                        "the core at %s refused worker %s: the relay secret does not match "
                        "the core's (CONCLAVE_RELAY_SECRET / relay.secret) or the clocks differ",
                        core_url,
                        worker_id,
                    )
                else:
                    log.error("the core at %s refused the connection (HTTP %s)", url, exc.status)
            except BadTicket as exc:
                log.error("the server at %s is not a trustworthy core: %s", url, exc)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("cannot reach the core at %s: %s", url, exc or type(exc).__name__)
            finally:
                await session.close()
            if session.was_ready:
                retry = FIRST_RETRY_SECONDS
            if stop.is_set():
                break
            # Jitter, so restarted workers do not stampede a core; not a security value.
            delay = retry * random.uniform(0.5, 1.0)  # noqa: S311
            retry = min(retry * 2, MAX_RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


class WorkerSession:
    """One control connection and the relay it drives."""

    def __init__(
        self,
        secret: Secret,
        worker_id: str,
        make_pc: Callable[[], RTCPeerConnection],
        max_packet_rate: float = DEFAULT_MAX_PACKET_RATE,
        *,
        public_address: str = "",
    ) -> None:
        """``public_address``: named beside every host candidate of the descriptions sent
        (``public_address.advertise``); empty: none."""
        self._secret = secret
        self._public_address = public_address
        self._worker_id = worker_id
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._load = (0, 0)
        self.relay = Relay(
            self._send_offer, make_pc, max_packet_rate, report_lost=self._report_lost
        )
        self.was_ready = False

    async def serve(self, http: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
        ticket, nonce = make_worker_ticket(self._secret, self._worker_id, time.time())
        async with http.ws_connect(
            url,
            headers={HEADER: ticket},
            heartbeat=control.HEARTBEAT_SECONDS,
            max_msg_size=_TRANSPORT_MAX_BYTES,
        ) as ws:
            self._ws = ws
            await self._expect_welcome(ws, nonce)
            await self._send(
                control.encode(control.READY, worker_id=self._worker_id, rooms=0, participants=0)
            )
            self.was_ready = True
            log.info("relay worker %s is ready at %s", self._worker_id, url)
            reading = asyncio.create_task(self._read(ws))
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reading, stopping):
                    task.cancel()
                await asyncio.gather(reading, stopping, return_exceptions=True)
            if not stop.is_set():
                log.warning("the control connection to the core closed; reconnecting")

    async def _expect_welcome(self, ws: aiohttp.ClientWebSocketResponse, nonce: str) -> None:
        try:
            message = await ws.receive(timeout=WELCOME_TIMEOUT_SECONDS)
        except TimeoutError:
            raise BadTicket("no welcome within the time limit") from None
        if message.type != aiohttp.WSMsgType.TEXT:
            raise BadTicket("the connection closed before the welcome")
        try:
            welcome = control.decode(message.data, frozenset({control.WELCOME}))
        except ProtocolError as exc:
            raise BadTicket("the first message was not a welcome") from exc
        verify_core_ticket(self._secret, welcome["ticket"], self._worker_id, nonce, time.time())

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self._handle(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await self._send(
                    control.encode(control.ERROR, message="Binary frames are ignored.")
                )
            elif message.type == aiohttp.WSMsgType.ERROR:
                log.warning("control connection error: %s", ws.exception())

    def _handle(self, raw: str) -> None:
        try:
            message = control.decode(raw, control.REQUESTS)
        except ProtocolError as exc:
            log.warning("bad control message from the core: %s", exc)
            reply: dict[str, Any] = {"message": exc.message}
            request_id = control.request_id_of(raw)
            if request_id is not None:
                reply["id"] = request_id
            self._spawn(self._send(control.encode(control.ERROR, **reply)))
            return
        self._spawn(self._serve_request(message))

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Only a send on a closing connection gets here; the reconnect handles it.
            log.debug("control reply not sent: %s", task.exception())

    async def _serve_request(self, message: dict[str, Any]) -> None:
        request_id: int = message["id"]
        try:
            fields = await self._dispatch(message)
        except ConclaveError as exc:
            # The code lets the core pass a refusal on as what it is (e.g. media_refused).
            await self._send(
                control.encode(
                    control.RESULT, id=request_id, ok=False, error=exc.message, code=exc.code
                )
            )
        except Exception:
            log.exception("relay request %s failed", message["type"])
            await self._send(control.failed(request_id, "The relay could not handle this request."))
        else:
            await self._send(control.ok(request_id, **fields))
            if message["type"] == control.JOIN:
                # Only after the answer went out: the client must hold it before our offer.
                await self.relay.connect(message["room"], message["participant"])
        await self._report_load()

    async def _dispatch(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message["type"]
        relay = self.relay
        if kind == control.JOIN:
            sdp = await relay.join(
                message["room"], message["participant"], message["offer"]["sdp"], message["id"]
            )
            return {"answer": control.sdp("answer", advertise(sdp, self._public_address))}
        if kind == control.ANSWER:
            await relay.answer(
                message["room"],
                message["participant"],
                message["negotiation"],
                message["answer"]["sdp"],
            )
        elif kind == control.LEAVE:
            await relay.leave(message["room"], message["participant"])
        elif kind == control.CLOSE_ROOM:
            await relay.close_room(message["room"])
        elif kind == control.STATS:
            foreign, rate_limited = relay.dropped()
            return {
                "rooms": relay.rooms,
                "participants": relay.participants,
                "forwarded_packets": relay.counters.forwarded_packets,
                "forwarded_bytes": relay.counters.forwarded_bytes,
                "received_packets": relay.counters.received_packets,
                "foreign_packets": foreign,
                "rate_limited_packets": rate_limited,
                "late_packets": relay.counters.late_packets,
                "rss_bytes": rss_bytes(),
            }
        return {}

    async def _report_load(self) -> None:
        load = (self.relay.rooms, self.relay.participants)
        if load != self._load:
            self._load = load
            await self._send(control.encode(control.LOAD, rooms=load[0], participants=load[1]))

    async def _report_lost(self, room: str, participant: str, join_id: int) -> None:
        event = control.encode(
            control.PEER_LOST, room=room, participant=participant, join_id=join_id
        )
        # On a closed connection there is no one to tell: the core forgets this worker's rooms.
        with contextlib.suppress(ConnectionError):
            await self._send(event)
            await self._report_load()

    async def _send_offer(self, room: str, participant: str, negotiation: int, sdp: str) -> None:
        try:
            await self._send(
                control.encode(
                    control.OFFER,
                    room=room,
                    participant=participant,
                    negotiation=negotiation,
                    offer=control.sdp("offer", advertise(sdp, self._public_address)),
                )
            )
        except ConnectionError as exc:
            raise RelayError("the control connection is closed") from exc

    async def _send(self, text: str) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionResetError("the control connection is closed")
        async with self._send_lock:
            await ws.send_str(text)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.relay.close()
        if self._ws is not None:
            await self._ws.close()


def freeze_startup_heap() -> None:
    """Once, in a worker process about to serve: what start-up made (modules, aiortc's and
    cryptography's tables, over half the objects the collector tracks) lives as long as the
    process, yet every full collection walks it, and a collection holds every packet in the
    queues. Frozen, it is skipped: the capacity bench's 10-person meeting at 60,000 packets
    a second paused 15 ms at most instead of 39. Not in ``run_worker``, which tests run in
    their own process."""
    gc.collect()
    gc.freeze()


def rss_bytes() -> int:
    """This process's resident memory now (Linux), or its peak elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
