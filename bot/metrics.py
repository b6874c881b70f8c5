"""The Prometheus registry and every instrument Conclave exposes at ``/metrics``.

Counters are advanced where their event happens (the hub, the adapters). Gauges of current
state (rooms in session, connections, relay workers and their load) are read from the hub and
the relay pool when scraped, so they cannot drift from the truth; relay packet counters are
asked of each worker just before a scrape is rendered (``refresh``).

Nothing here is labelled with a room id, a participant id, a person's name or a topic: label
values are message types, error codes, platform names, fixed outcomes and relay worker ids.
Each application has its own registry, never the process-global one, so that several
applications in one process (as in the tests) count apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Prometheus text exposition format 0.0.4, which every Prometheus version scrapes.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# How long a scrape waits for the relay workers' packet counters; one that is slower is left
# out of that scrape rather than holding it up.
TRAFFIC_WAIT_SECONDS: Final = 2.0
# Label values are codes and names from this code base; anything else is shown as "other", so
# no value that came from outside can ever become a label (or a new time series).
_LABEL: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")


def label(value: str) -> str:
    return value if _LABEL.fullmatch(value) else "other"


@dataclass(frozen=True)
class Census:
    """The hub's rooms and connections at one instant."""

    rooms: int  # rooms with at least one connection
    admitted: int  # connections in a meeting
    waiting: int  # connections waiting in a lobby


@dataclass(frozen=True)
class WorkerLoad:
    """A ready relay worker and the load it last reported."""

    worker: str
    rooms: int
    participants: int


@dataclass(frozen=True)
class WorkerTraffic:
    """A relay worker's packet counters since it connected."""

    worker: str
    received_packets: int
    forwarded_packets: int
    forwarded_bytes: int
    foreign_packets: int
    rate_limited_packets: int
    late_packets: int
    rss_bytes: int


class HubView(Protocol):
    def census(self) -> Census: ...


class RelayView(Protocol):
    def loads(self) -> list[WorkerLoad]: ...

    async def traffic(self, within: float) -> list[WorkerTraffic]: ...


class Metrics:
    """One application's registry, its event counters and its view of the live state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._messages = Counter(
            "conclave_signaling_messages",
            "Signaling messages received from connections past their hello, by type.",
            ["type"],
            registry=self.registry,
        )
        self._refusals = Counter(
            "conclave_signaling_refusals",
            "Signaling refusals by error code: hellos and messages answered with an error "
            "(connection closed) or a warning (request declined).",
            ["code"],
            registry=self.registry,
        )
        self._commands = Counter(
            "conclave_commands",
            "Slash commands handled, by platform and outcome (ok, refused or error).",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self._dm_failures = Counter(
            "conclave_dm_failures",
            "Invitations that could not be delivered by direct message, by platform.",
            ["platform"],
            registry=self.registry,
        )
        self._state = _LiveState()
        self.registry.register(self._state)

    # --- events --------------------------------------------------------------------------

    def message(self, kind: str) -> None:
        self._messages.labels(type=label(kind)).inc()

    def refused(self, code: str) -> None:
        self._refusals.labels(code=label(code)).inc()

    def command(self, platform: str, outcome: str) -> None:
        self._commands.labels(platform=label(platform), outcome=label(outcome)).inc()

    def dm_failed(self, platform: str, count: int = 1) -> None:
        if count > 0:
            self._dm_failures.labels(platform=label(platform)).inc(count)

    # --- state ---------------------------------------------------------------------------

    def watch(self, hub: HubView, relay: RelayView | None) -> None:
        """Read rooms and connections from ``hub`` and relay workers from ``relay`` at each
        scrape."""
        self._state.hub = hub
        self._state.relay = relay

    async def refresh(self) -> None:
        """Ask every relay worker for its packet counters, for the next ``render``."""
        relay = self._state.relay
        self._state.traffic = [] if relay is None else await relay.traffic(TRAFFIC_WAIT_SECONDS)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        await self.refresh()
        return self.render()


class _LiveState(Collector):
    """Gauges and relay counters computed when scraped."""

    def __init__(self) -> None:
        self.hub: HubView | None = None
        self.relay: RelayView | None = None
        self.traffic: Sequence[WorkerTraffic] = ()

    def collect(self) -> Iterable[Metric]:
        if self.hub is not None:
            census = self.hub.census()
            yield _gauge("conclave_rooms_open", "Rooms with at least one connection.", census.rooms)
            connected = GaugeMetricFamily(
                "conclave_participants_connected",
                "Participants connected to signaling, in a meeting or waiting in its lobby.",
                labels=["state"],
            )
            connected.add_metric(["admitted"], census.admitted)
            connected.add_metric(["lobby"], census.waiting)
            yield connected
        if self.relay is not None:
            yield from _loads(self.relay.loads())
            yield from _traffic(self.traffic)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _per_worker(
    kind: type[GaugeMetricFamily | CounterMetricFamily], name: str, documentation: str
) -> GaugeMetricFamily | CounterMetricFamily:
    return kind(name, documentation, labels=["worker"])


def _loads(loads: Sequence[WorkerLoad]) -> Iterable[Metric]:
    yield _gauge("conclave_relay_workers_ready", "Relay workers connected and ready.", len(loads))
    gauge = GaugeMetricFamily
    rooms = _per_worker(gauge, "conclave_relay_worker_rooms", "Rooms a relay worker carries.")
    participants = _per_worker(
        gauge, "conclave_relay_worker_participants", "Participants a relay worker carries."
    )
    for load in loads:
        rooms.add_metric([load.worker], load.rooms)
        participants.add_metric([load.worker], load.participants)
    yield from (rooms, participants)


def _traffic(traffic: Sequence[WorkerTraffic]) -> Iterable[Metric]:
    counter = CounterMetricFamily
    received = _per_worker(
        counter, "conclave_relay_received_packets", "RTP packets a relay worker received."
    )
    packets = _per_worker(
        counter,
        "conclave_relay_forwarded_packets",
        "RTP packets a relay worker forwarded to subscribers.",
    )
    octets = _per_worker(
        counter,
        "conclave_relay_forwarded_bytes",
        "RTP payload bytes (SFrame ciphertext) a relay worker forwarded to subscribers.",
    )
    memory = _per_worker(
        GaugeMetricFamily,
        "conclave_relay_worker_resident_memory_bytes",
        "A relay worker process's resident memory.",
    )
    dropped = CounterMetricFamily(
        "conclave_relay_dropped_packets",
        "Packets a relay worker dropped before decryption: from an SSRC no offer announced "
        "(foreign), over relay.max_packet_rate (rate_limited), or that waited in a socket "
        "for more than 200 ms because the worker could not keep up (late).",
        labels=["worker", "reason"],
    )
    for t in traffic:
        received.add_metric([t.worker], t.received_packets)
        packets.add_metric([t.worker], t.forwarded_packets)
        octets.add_metric([t.worker], t.forwarded_bytes)
        memory.add_metric([t.worker], t.rss_bytes)
        dropped.add_metric([t.worker, "foreign"], t.foreign_packets)
        dropped.add_metric([t.worker, "rate_limited"], t.rate_limited_packets)
        dropped.add_metric([t.worker, "late"], t.late_packets)
    yield from (received, packets, octets, memory, dropped)
