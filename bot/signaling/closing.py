"""How the hub says no: a ``warning`` that keeps the connection open, or an ``error`` and the
close, with the close codes of docs/PROTOCOL.md section 6."""

from __future__ import annotations

import logging
from typing import Final

from bot.errors import CodedError, ConclaveError, ProtocolError
from bot.signaling.messages import to_client
from bot.signaling.outbox import Outbox

log = logging.getLogger(__name__)

CLOSE_PROTOCOL: Final = 4400
CLOSE_KICKED: Final = 4401
CLOSE_REFUSED: Final = 4403
CLOSE_REPLACED: Final = 4409
CLOSE_ENDED: Final = 4410
CLOSE_RATE: Final = 4429


class Declined(CodedError):
    """A request the hub declines without closing the connection (sent as ``warning``)."""


class RateLimited(ProtocolError):
    code = "rate_limited"

    def __init__(self) -> None:
        super().__init__("Too many messages; slow down.")


def refuse(outbox: Outbox, err: ConclaveError, close_code: int) -> None:
    """An ``error`` naming ``err``, then the close; returns at once, as every send does."""
    log.info("websocket refused: %s", err.code)
    outbox.close(close_code, err.code.encode(), to_client("error", code=err.code, message=str(err)))
