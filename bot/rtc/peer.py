"""Every RTCPeerConnection Conclave makes, made one way: only the configured ICE servers.

aiortc's default configuration (``iceServers=None``) contacts a public STUN server, which would
tell a third party who is meeting; Conclave never uses it. Public aiortc API only.
"""

from __future__ import annotations

from typing import Protocol

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcconfiguration import RTCBundlePolicy

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


def make_peer_connection(ice: IceSettings | None = None) -> RTCPeerConnection:
    """An RTCPeerConnection with MAX_BUNDLE and only ``ice``'s servers (None: no server)."""
    servers = (
        []
        if ice is None
        else [
            RTCIceServer(
                urls=url,
                username=ice.ice_username or None,
                credential=ice.ice_credential.reveal() or None,
            )
            for url in ice.ice_servers
        ]
    )
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


def prefer_codec(transceiver: RTCRtpTransceiver) -> None:
    """Negotiate only the profile's codec for this kind (plus RTX)."""
    wanted = PROFILE[transceiver.kind].mime_type
    caps = RTCRtpSender.getCapabilities(transceiver.kind)
    transceiver.setCodecPreferences(
        [c for c in caps.codecs if c.mimeType == wanted or c.mimeType.endswith("/rtx")]
    )
