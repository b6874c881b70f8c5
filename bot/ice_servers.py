"""The STUN and TURN servers one peer connection gets, with its own TURN credentials.

With ``relay.turn_secret`` set, the credentials are coturn's shared-secret ones (its
``use-auth-secret``, the "TURN REST API"): the username is ``<expiry>:<user>``, the Unix time
they stop working and whom they were made for, and the password is
base64(HMAC-SHA1(secret, username)). coturn checks the pair with the same secret and refuses it
after the expiry, so each participant holds a pair that is only its own and only for a while,
and the secret stays on the servers. Without it, the fixed ``ice_username`` and
``ice_credential`` go to everyone.

Plain Python: the core mints for the ``welcome`` it sends each participant, a relay worker for
its own peer connections (``bot.rtc.peer`` turns these into aiortc's objects).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.secret import Secret

TURN_SCHEMES = ("turn:", "turns:")


class IceConfig(Protocol):
    """The ICE part of the configuration; ``config.RelaySettings`` is one."""

    @property
    def ice_servers(self) -> tuple[str, ...]: ...

    @property
    def ice_username(self) -> str: ...

    @property
    def ice_credential(self) -> Secret: ...

    @property
    def turn_secret(self) -> Secret: ...

    @property
    def turn_ttl(self) -> int: ...  # seconds


@dataclass(frozen=True)
class IceServer:
    """One entry of an ``RTCConfiguration``'s ``iceServers``."""

    urls: tuple[str, ...]
    username: str = ""
    credential: Secret = Secret("")

    def to_json(self) -> dict[str, Any]:
        """As the browser's RTCIceServer dictionary (and the ``welcome`` message) has it."""
        shown: dict[str, Any] = {"urls": list(self.urls)}
        if self.username:
            shown["username"] = self.username
        if self.credential:
            shown["credential"] = self.credential.reveal()
        return shown

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> IceServer:
        """From a ``welcome``'s entry, which ``bot.signaling.messages`` has checked."""
        return cls(
            tuple(value["urls"]), value.get("username", ""), Secret(value.get("credential", ""))
        )


def turn_credentials(secret: Secret, user: str, expiry: int) -> tuple[str, Secret]:
    """coturn's shared-secret credentials for ``user``, valid until ``expiry`` (Unix time)."""
    username = f"{expiry}:{user}"
    mac = hmac.new(secret.reveal().encode(), username.encode(), hashlib.sha1).digest()
    return username, Secret(base64.b64encode(mac).decode("ascii"))


def configured(urls: Sequence[str], username: str, credential: Secret) -> tuple[IceServer, ...]:
    """The STUN URLs with no credentials, and the TURN URLs with these."""
    stun = tuple(u for u in urls if not u.startswith(TURN_SCHEMES))
    turn = tuple(u for u in urls if u.startswith(TURN_SCHEMES))
    servers = [IceServer(stun)] if stun else []
    if turn:
        servers.append(IceServer(turn, username, credential))
    return tuple(servers)


def ice_servers_for(config: IceConfig, user: str, now: float) -> tuple[IceServer, ...]:
    """The servers for ``user``'s peer connections, with TURN credentials minted for it at
    ``now`` when ``turn_secret`` is set, otherwise the configured fixed ones."""
    if config.turn_secret:
        username, credential = turn_credentials(
            config.turn_secret, user, int(now) + config.turn_ttl
        )
    else:
        username, credential = config.ice_username, config.ice_credential
    return configured(config.ice_servers, username, credential)
