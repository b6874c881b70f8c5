"""Every RTCPeerConnection Conclave makes, made one way: only the configured ICE servers.

aiortc's default configuration (``iceServers=None``) contacts a public STUN server, which would
tell a third party who is meeting; Conclave never uses it. Public aiortc API only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from bot.ice_servers import IceServer, configured
from bot.rtc.profile import PROFILE
from bot.secret import Secret


class IceSettings(Protocol):
    """The ICE part of the configuration, passed whole; ``config.RelaySettings`` is one."""

    @property
    def ice_servers(self) -> tuple[str, ...]: ...  # STUN/TURN URLs; empty: host candidates only

    @property
    def ice_username(self) -> str: ...

    @property
    def ice_credential(self) -> Secret: ...


def make_peer_connection(
    ice: IceSettings | None = None,
    *,
    servers: Sequence[IceServer] = (),
    relay_only: bool = False,
) -> RTCPeerConnection:
    """An RTCPeerConnection with MAX_BUNDLE and only these ICE servers: ``servers`` (e.g. the
    ones a ``welcome`` handed this participant), then ``ice``'s, with its fixed credentials.

    ``relay_only`` is the ``relay`` ICE transport policy: only candidates relayed by a TURN
    server are gathered and used, so media goes through TURN or not at all.
    """
    chosen = [*servers]
    if ice is not None:
        chosen += configured(ice.ice_servers, ice.ice_username, ice.ice_credential)
    return RTCPeerConnection(
        RTCConfiguration(
            iceServers=[
                RTCIceServer(
                    urls=url,
                    username=server.username or None,
                    credential=server.credential.reveal() or None,
                )
                for server in chosen
                for url in server.urls
            ],
            iceTransportPolicy=(
                RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
            ),
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
    )


def prefer_codec(transceiver: RTCRtpTransceiver) -> None:
    """Negotiate only the profile's codec for this kind (plus RTX)."""
    wanted = PROFILE[transceiver.kind].mime_type
    caps = RTCRtpSender.getCapabilities(transceiver.kind)
    transceiver.setCodecPreferences(
        [c for c in caps.codecs if c.mimeType == wanted or c.mimeType.endswith("/rtx")]
    )
