"""The hooks that put an ``InboundGuard`` in front of a peer connection's ICE checks and
inbound datagrams: aioice's ``Connection.check_incoming`` and ``data_received`` and aiortc's
``RTCDtlsTransport`` ``_setup_srtp``, ``_rx_srtp`` and ``_rtp_header_extensions_map.get``,
each looked up on the instance (``check_internals`` checks that they are there)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

from bot.rtc.inbound import InboundGuard


def guard_inbound(pc: RTCPeerConnection, guard: InboundGuard) -> None:
    """Put ``guard`` in front of the ICE checks and inbound SRTP of every transport ``pc`` has.

    Call it after each description that may add a transport, before the connection can start:
    once DTLS is up the transport makes its libsrtp session in ``_setup_srtp``, then decrypts
    with ``_rx_srtp`` and decodes with ``_rtp_header_extensions_map.get``; the ICE connection
    (``RTCIceTransport._connection``) takes each authentic check in ``check_incoming`` and
    queues every other datagram, from whatever address, in ``data_received``. All are looked
    up on the instance, so wrapping them there takes effect for this transport only.
    """
    for transceiver in pc.getTransceivers():
        transport: Any = transceiver.receiver.transport
        if any(t is transport for t in guard.transports):
            continue
        guard.transports.append(transport)
        connection = transport.transport._connection
        connection.check_incoming = _capped_checks(connection, guard)
        connection.data_received = _non_empty(connection.data_received, guard.count_malformed)
        extensions = transport._rtp_header_extensions_map
        extensions.get = guard.checked_extensions(extensions.get)
        if transport._rx_srtp is not None:
            _swap_in(transport, guard)
        else:
            transport._setup_srtp = _then_swap_in(transport, guard)


def _capped_checks(connection: Any, guard: InboundGuard) -> Callable[[Any, Any, Any], None]:
    stock_check = connection.check_incoming

    def check_incoming(message: Any, addr: tuple[str, int], protocol: Any) -> None:
        known = connection._remote_candidates
        if len(known) >= guard.remote_candidates and not any(
            getattr(c, "_network_host", c.host) == addr[0] and c.port == addr[1] for c in known
        ):
            guard.ice_refused += 1
            return
        stock_check(message, addr, protocol)

    return check_incoming


def drop_empty_datagrams(pc: RTCPeerConnection, on_drop: Callable[[], None]) -> None:
    """Of what ``guard_inbound`` does, what a client needs: every transport ``pc`` has drops
    an empty datagram (and calls ``on_drop``) instead of letting it end the connection. Call it
    after each description that may add a transport; a transport already covered is left be."""
    for transceiver in pc.getTransceivers():
        connection: Any = transceiver.receiver.transport.transport._connection
        if not getattr(connection.data_received, "drops_empty", False):
            connection.data_received = _non_empty(connection.data_received, on_drop)


def _non_empty(stock: Callable[[bytes, int], None], on_drop: Callable[[], None]) -> Any:
    """aiortc's DTLS transport reads the first byte of every datagram aioice queues: an empty
    one raises IndexError in its receive task, which then closes the transport. Anyone who can
    reach the port could end a participant's media with one empty UDP datagram."""

    def data_received(data: bytes, component: int) -> None:
        if data:
            stock(data, component)
        else:
            on_drop()

    wrapped: Any = data_received
    wrapped.drops_empty = True
    return wrapped


def _then_swap_in(transport: Any, guard: InboundGuard) -> Callable[[], None]:
    stock_setup = transport._setup_srtp

    def setup() -> None:
        stock_setup()
        _swap_in(transport, guard)

    return setup


def _swap_in(transport: Any, guard: InboundGuard) -> None:
    guard.session = transport._rx_srtp
    transport._rx_srtp = guard
