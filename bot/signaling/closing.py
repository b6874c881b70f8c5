"""How the hub ends a connection: its close codes, and the ``error`` that comes first."""

from __future__ import annotations

import logging
from typing import Final

from bot.errors import ConclaveError
from bot.signaling.envelope import encode
from bot.signaling.outbox import Outbox

log = logging.getLogger(__name__)

CLOSE_PROTOCOL: Final = 4400
CLOSE_KICKED: Final = 4401
CLOSE_REFUSED: Final = 4403
CLOSE_REPLACED: Final = 4409
CLOSE_ENDED: Final = 4410
CLOSE_RATE: Final = 4429


def refuse(outbox: Outbox, err: ConclaveError, close_code: int) -> None:
    """An ``error`` naming ``err``, then the close; returns at once, as every send does."""
    log.info("websocket refused: %s", err.code)
    outbox.close(close_code, err.code.encode(), encode("error", code=err.code, message=str(err)))
