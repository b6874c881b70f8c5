"""The join link and the credentials inside it.

``{public_url}/j/{room_id}#{invite_id}.{secret}``: the secret rides in the fragment, which
browsers never put in a request line, a server log or a Referer header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from bot.errors import BadInvite, BadResumeToken
from bot.secret import Secret

# Always used with fullmatch: with match, "$" also matches before a final newline.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class JoinLink:
    base_url: str  # scheme://host[:port][/prefix], without a trailing slash
    room_id: str
    invite_id: str
    secret: Secret

    @property
    def credential(self) -> Secret:
        return Secret(f"{self.invite_id}.{self.secret.reveal()}")

    @property
    def websocket_url(self) -> str:
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"


def make_link(public_url: str, room_id: str, invite_id: str, secret: Secret) -> Secret:
    return Secret(f"{public_url.rstrip('/')}/j/{room_id}#{invite_id}.{secret.reveal()}")


def is_id(text: str) -> bool:
    """Room, invite and participant ids: URL-safe, 1 to 64 characters."""
    return _ID.fullmatch(text) is not None


def _split(token: str) -> tuple[str, Secret] | None:
    """``<id>.<secret>``, the shape of invite keys and resume tokens; None for anything else."""
    ident, dot, secret = token.strip().partition(".")
    if not dot or not _ID.fullmatch(ident) or not _SECRET.fullmatch(secret):
        return None
    return ident, Secret(secret)


def split_credential(credential: str) -> tuple[str, Secret]:
    """``<invite_id>.<secret>`` into its parts; BadInvite if it has another shape."""
    parts = _split(credential)
    if parts is None:
        raise BadInvite("This invite key is malformed; copy the whole link from your message.")
    return parts


def split_resume_token(token: str) -> tuple[str, Secret]:
    parts = _split(token)
    if parts is None:
        raise BadResumeToken()
    return parts


def parse_link(link: str) -> JoinLink:
    """Parse a join link as pasted by a person; BadInvite with the reason otherwise."""
    text = link.strip().strip("<>'\"")
    try:
        parts: SplitResult | None = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" around an IPv6 host
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInvite("That is not a Conclave join link (it should start with https://).")
    path = parts.path.rstrip("/")
    prefix, marker, room_id = path.rpartition("/j/")
    if not marker or not _ID.fullmatch(room_id):
        raise BadInvite("That link has no meeting room in it (expected …/j/<room>#<key>).")
    if not parts.fragment:
        raise BadInvite("That link is missing its invite key (the part after '#').")
    invite_id, secret = split_credential(parts.fragment)
    return JoinLink(
        base_url=f"{parts.scheme}://{parts.netloc}{prefix}",
        room_id=room_id,
        invite_id=invite_id,
        secret=secret,
    )
