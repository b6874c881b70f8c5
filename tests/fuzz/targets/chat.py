"""Targets for what people and chat platforms send: the ``/meet`` text, a pasted join link (and
the credentials inside links and resume tokens), and a Slack HTTP request."""

from __future__ import annotations

import contextlib

from slack_sdk.signature import Clock, SignatureVerifier

from adapters.slack.events import signed
from bot.commands.grammar import parse
from bot.core.links import is_id, parse_link, split_credential, split_resume_token
from bot.errors import BadInvite, BadResumeToken, CommandError
from tests.fuzz import material
from tests.fuzz.targets import expect, fields, text


def meet_command(data: bytes) -> None:
    try:
        parse(text(data))
    except CommandError:
        return


def join_link(data: bytes) -> None:
    """The same text as a pasted link, an invite key and a resume token."""
    pasted = text(data)
    try:
        link = parse_link(pasted)
    except BadInvite:
        pass
    else:
        expect(is_id(link.room_id) and is_id(link.invite_id), "ids are URL-safe")
        expect(link.websocket_url.startswith(("ws://", "wss://")), "a websocket URL")
    with contextlib.suppress(BadInvite):
        split_credential(pasted)
    try:
        split_resume_token(pasted)
    except BadResumeToken:
        return


class _Fixed(Clock):
    def now(self) -> float:
        return float(material.NOW)


def slack_request(data: bytes) -> None:
    """Lines: the timestamp header, the signature header, the charset of the Content-Type, then
    the body, as ``POST /slack/events`` receives them (aiohttp decodes headers with
    surrogateescape; Bolt reads the body with the request's charset)."""
    timestamp, signature, charset, body = fields(data, 4)
    headers = {"X-Slack-Request-Timestamp": text(timestamp), "X-Slack-Signature": text(signature)}
    verifier = SignatureVerifier(material.SLACK_SIGNING_SECRET, clock=_Fixed())
    ok = signed(verifier, body, text(charset) or None, headers)
    expect(isinstance(ok, bool), "a yes or a no")
