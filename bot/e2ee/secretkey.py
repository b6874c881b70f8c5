"""Key bytes that cannot leak by accident: the byte-valued kind of ``bot.secret.Redacted``."""

from __future__ import annotations

from bot.secret import Redacted


class SecretKey(Redacted[bytes]):
    """Key material; only ``reveal()`` gives the bytes back."""

    __slots__ = ()

    def __init__(self, value: bytes) -> None:
        super().__init__(bytes(value))

    def __len__(self) -> int:
        return len(self._value)
