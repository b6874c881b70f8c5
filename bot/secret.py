"""Secret values that cannot leak by accident through repr, str, f-strings, logs or pickling."""

from __future__ import annotations

import hmac
from typing import Final, Generic, NoReturn, TypeVar

REDACTED: Final = "**********"

T = TypeVar("T", str, bytes)


class Redacted(Generic[T]):
    """Holds a secret; only ``reveal()`` gives the value back, and equality is constant-time."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value: T = value

    def reveal(self) -> T:
        return self._value

    def _bytes(self) -> bytes:
        v = self._value
        return v.encode() if isinstance(v, str) else v

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Redacted)
        return hmac.compare_digest(self._bytes(), other._bytes())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("secrets are not picklable")


class Secret(Redacted[str]):
    """A secret string: an invite key, a token, a link that carries one."""

    __slots__ = ()
