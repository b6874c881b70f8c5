"""The bench plays the core: it serves the relay control websocket and brokers SDP.

Workers (``worker_entry``, from the current tree or a baseline worktree) dial in with the
shared secret, exactly as they would dial a real core; several may be connected at once, each
serving the rooms given to it. Generator processes (``generator``) hold the participants' peer
connections; the core passes each one's offer to its worker, the worker's answer back, and the
worker's re-offers to the participant, one negotiation at a time per participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from bench.procstats import stop_process
from bot.relay import control
from bot.relay.tickets import HEADER, BadTicket, NonceCache, answer_worker_ticket
from bot.secret import Secret

REPO: Final = Path(__file__).resolve().parents[2]
WORKER_ENTRY: Final = Path(__file__).resolve().with_name("worker_entry.py")
REQUEST_TIMEOUT: Final = 60.0
WORKER_START_TIMEOUT: Final = 30.0


class Channel:
    """Request/response over one connection: numbered requests, futures for the results."""

    def __init__(self) -> None:
        self._next = 0
        self._results: dict[int, asyncio.Future[dict[str, Any]]] = {}

    def _open(self) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results[self._next] = future
        return self._next, future

    def _resolve(self, message: dict[str, Any]) -> None:
        future = self._results.pop(message["id"], None)
        if future is not None and not future.done():
            future.set_result(message)

    def _fail_all(self, why: str) -> None:
        for future in self._results.values():
            if not future.done():
                future.set_exception(ConnectionError(why))
        self._results.clear()


class GeneratorProcess(Channel):
    """One ``python -m bench.capacity.generator`` and its JSON-lines command pipe."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        super().__init__()
        self.proc = proc
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls) -> GeneratorProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.capacity.generator",
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**22,
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self._resolve(json.loads(line))
        self._fail_all("the generator process exited")

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        ident, future = self._open()
        self.proc.stdin.write(json.dumps({"id": ident, "op": op, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        result = await asyncio.wait_for(future, REQUEST_TIMEOUT)
        if not result["ok"]:
            raise RuntimeError(f"generator {op} failed: {result.get('error')}")
        return result

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                await asyncio.wait_for(self.call("close"), 10)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            await stop_process(self.proc)
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


class WorkerLink(Channel):
    """One worker's control connection, as the core holds it."""

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id
        self.ready = asyncio.Event()
        self.ws: web.WebSocketResponse | None = None

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        assert self.ws is not None
        ident, future = self._open()
        await self.ws.send_str(json.dumps({"type": kind, "id": ident, **fields}))
        result = await asyncio.wait_for(future, REQUEST_TIMEOUT)
        if not result["ok"]:
            raise RuntimeError(f"worker {self.worker_id} refused {kind}: {result}")
        return result


@dataclass(eq=False)
class Member:
    """A participant: which room and worker, which generator holds its peer connection."""

    name: str
    number: int
    room: str
    kinds: list[str]
    link: WorkerLink
    generator: GeneratorProcess
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    negotiating: asyncio.Lock = field(default_factory=asyncio.Lock)


class BenchCore:
    """The control websocket server, the workers' links and the members they serve."""

    def __init__(self, secret: Secret) -> None:
        self.secret = secret
        self.links: dict[str, WorkerLink] = {}
        self.members: dict[str, Member] = {}
        self._nonces = NonceCache()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(control.ROUTE, self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        (address,) = self._runner.addresses
        self.url = f"http://127.0.0.1:{address[1]}"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def expect(self, worker_id: str) -> WorkerLink:
        link = self.links[worker_id] = WorkerLink(worker_id)
        return link

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        try:
            worker_id, ticket = answer_worker_ticket(
                self.secret, request.headers.get(HEADER, ""), time.time(), self._nonces
            )
        except BadTicket:
            raise web.HTTPUnauthorized() from None
        link = self.links.get(worker_id)
        if link is None:
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse(max_msg_size=4 * control.MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        link.ws = ws
        await ws.send_str(control.encode(control.WELCOME, ticket=ticket))
        async for message in ws:
            data = control.decode(message.data, control.TO_CORE)
            if data["type"] == control.READY:
                link.ready.set()
            elif data["type"] == control.RESULT:
                link._resolve(data)
            elif data["type"] == control.OFFER:
                self._spawn(self._relay_offer(link, data))
        link._fail_all(f"worker {worker_id} disconnected")
        return ws

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay_offer(self, link: WorkerLink, event: dict[str, Any]) -> None:
        member = self.members[event["participant"]]
        await member.joined.wait()  # like the real core: the join's answer first
        async with member.negotiating:
            try:
                reply = await member.generator.call(
                    "relay_offer", name=member.name, sdp=event["offer"]["sdp"]
                )
            except ConnectionError:
                # The generator has exited: the session is closing, and the worker re-offers
                # to those left as their peers' connections close.
                return
        fields = {k: event[k] for k in ("room", "participant", "negotiation")}
        await link.request("answer", answer=control.sdp("answer", reply["answer"]), **fields)

    async def join(self, member: Member, verify: bool = False) -> None:
        self.members[member.name] = member
        offer = await member.generator.call(
            "add", name=member.name, number=member.number, kinds=member.kinds, verify=verify
        )
        result = await member.link.request(
            "join",
            room=member.room,
            participant=member.name,
            offer=control.sdp("offer", offer["offer"]),
        )
        await member.generator.call("answer", name=member.name, sdp=result["answer"]["sdp"])
        member.joined.set()


async def start_worker(
    core: BenchCore, worker_id: str, root: Path
) -> tuple[WorkerLink, asyncio.subprocess.Process]:
    """A worker process running the code in ``root``, connected and ready."""
    link = core.expect(worker_id)
    env = {
        **os.environ,
        "CONCLAVE_RELAY_SECRET": core.secret.reveal(),
        "PYTHONPATH": str(root),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER_ENTRY), core.url, worker_id, str(root), cwd=root, env=env
    )
    ready = asyncio.create_task(link.ready.wait())
    exited = asyncio.create_task(proc.wait())
    await asyncio.wait(
        {ready, exited}, timeout=WORKER_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
    )
    ready.cancel()
    exited.cancel()
    if link.ready.is_set():
        return link, proc
    if proc.returncode is None:
        await stop_process(proc)
        raise RuntimeError(f"worker {worker_id} from {root} did not become ready")
    raise RuntimeError(f"worker {worker_id} from {root} exited with status {proc.returncode}")
