"""Targets for what the relay reads: VP8 payload descriptors from publishers, and the control
channel between the core and a worker (its messages and the tickets that open it)."""

from __future__ import annotations

from aiortc.codecs.vpx import VpxPayloadDescriptor

from bot.errors import ProtocolError
from bot.relay import control
from bot.relay.tickets import BadTicket, NonceCache, verify_core_ticket, verify_worker_ticket
from bot.relay.tracks import vp8_starts_key_frame
from bot.secret import Secret
from tests.fuzz import material
from tests.fuzz.targets import as_received, expect, fields, text


def _reference_starts_key_frame(payload: bytes) -> bool:
    """RFC 7741 read by aiortc's own descriptor parser, which the relay does not use."""
    try:
        descriptor, rest = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return False
    return (
        descriptor.partition_start == 1
        and descriptor.partition_id == 0
        and len(rest) > 0
        and not rest[0] & 0x01
    )


def vp8_descriptor(data: bytes) -> None:
    starts = vp8_starts_key_frame(data)
    expect(isinstance(starts, bool), "a yes or a no")
    expect(starts == _reference_starts_key_frame(data), "agrees with aiortc's reading")


def relay_control(data: bytes) -> None:
    """Each direction's messages, and the id the worker quotes when it refuses one."""
    for raw in as_received(data):
        for allowed in (control.REQUESTS, control.TO_CORE, frozenset({control.WELCOME})):
            try:
                message = control.decode(raw, allowed)
            except ProtocolError:
                continue
            expect(message["type"] in allowed, "only the types allowed")
        request_id = control.request_id_of(raw)
        expect(request_id is None or type(request_id) is int, "an id is an integer")


def relay_ticket(data: bytes) -> None:
    """A worker's ticket header as the core reads it (line 1) and the core's welcome ticket as
    the worker reads it (line 2)."""
    secret = Secret(material.RELAY_SECRET)
    worker_ticket, core_ticket = (text(f) for f in fields(data, 2))
    try:
        worker_id = verify_worker_ticket(secret, worker_ticket, material.NOW, NonceCache())
    except BadTicket:
        pass
    else:
        expect(worker_id == material.WORKER_ID, "only the worker the secret signed for")
    try:
        verify_core_ticket(
            secret, core_ticket, material.WORKER_ID, material.WORKER_NONCE, material.NOW
        )
    except BadTicket:
        return
