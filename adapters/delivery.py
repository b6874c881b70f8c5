"""Send every invitation of an outcome by direct message, at once, and say how it went.

Platform-neutral: each adapter passes the one function that sends one invitation on its
platform, raising ``Undeliverable`` with a reason people understand when it cannot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.commands import render
from bot.commands.handler import Invitation, Outcome
from bot.errors import ConclaveError
from bot.metrics import Metrics

log = logging.getLogger(__name__)

Send = Callable[[Invitation], Awaitable[None]]

UNKNOWN_REASON = "the message could not be delivered"


class Undeliverable(ConclaveError):
    """The platform refused a direct message; ``str(err)`` says why, for the host."""

    code = "undeliverable"


@dataclass(frozen=True)
class DeliveryReport:
    room_id: str | None
    sent: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()

    def text(self) -> str:
        if self.room_id is None:
            return ""
        return render.delivery_report(self.room_id, self.sent, self.failed)


async def _attempt(invitation: Invitation, send: Send) -> str | None:
    """None when sent; otherwise the reason it was not."""
    try:
        await send(invitation)
    except Undeliverable as err:
        return str(err)
    except Exception as exc:
        # Only the type: a library's message may quote the request, and the request holds a link.
        log.warning("direct message to %s failed: %s", invitation.to.user_id, type(exc).__name__)
        return UNKNOWN_REASON
    return None


async def deliver(invitations: Sequence[Invitation], send: Send) -> DeliveryReport:
    """Send all invitations concurrently; none is retried here (the platform client handles
    rate limits, and a closed inbox stays closed)."""
    if not invitations:
        return DeliveryReport(room_id=None)
    reasons = await asyncio.gather(*(_attempt(i, send) for i in invitations))
    sent = tuple(i.to.display_name for i, why in zip(invitations, reasons, strict=True) if not why)
    failed = tuple(
        (i.to.display_name, why) for i, why in zip(invitations, reasons, strict=True) if why
    )
    return DeliveryReport(room_id=invitations[0].room.id, sent=sent, failed=failed)


def count(
    metrics: Metrics | None, platform: str, outcome: Outcome, report: DeliveryReport | None = None
) -> None:
    """Count one slash command on ``platform`` by its outcome, and its undelivered DMs."""
    if metrics is None:
        return
    if outcome.ok:
        result = "ok"
    else:
        # The handler answers every failure it did not foresee with exactly this text.
        result = "error" if outcome.reply == render.INTERNAL_ERROR else "refused"
    metrics.command(platform, result)
    if report is not None:
        metrics.dm_failed(platform, len(report.failed))


def caller_reply(outcome: Outcome, report: DeliveryReport) -> str:
    """Everything the caller alone sees: the outcome (with their own link, if any) and who
    got a DM. Never post this anywhere public."""
    return "\n".join(part for part in (outcome.private_text(), report.text()) if part)
