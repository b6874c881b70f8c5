"""HTTP mode: Slack posts slash commands to ``POST /slack/events`` on Conclave's own server.

Every request is checked here, before Bolt sees it: HMAC-SHA256 over ``v0:{timestamp}:{body}``
with the signing secret, a timestamp within five minutes, and a signature not seen before (a
replayed copy of a signed request is refused). We check here rather than in Bolt's middleware
because that middleware answers 500 to a non-numeric timestamp and logs the whole refused
body; here a refusal is always a 401 and a one-line log without the body.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from adapters.slack.replay import SeenSignatures
from bot.secret import Secret

log = logging.getLogger(__name__)

PATH = "/slack/events"


def signed(
    verifier: SignatureVerifier, body: bytes, charset: str | None, headers: Mapping[str, str]
) -> bool:
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    # The verifier calls int(timestamp) and hmac.compare_digest(signature), which raise on
    # what is refused here: anything but a few ASCII digits (int() takes at most 4,300), and
    # a signature that is not ASCII.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 20):
        return False
    if not (signature and signature.isascii()):
        return False
    try:
        # As Bolt will read it: a body that does not decode is not one Slack signed.
        text = body.decode(charset or "utf-8")
    except (LookupError, ValueError):  # an unknown charset, or bytes it cannot decode
        return False
    return bool(verifier.is_valid(text, timestamp, signature))


def mount(web_app: web.Application, bolt: AsyncApp, signing_secret: Secret) -> None:
    verifier = SignatureVerifier(signing_secret.reveal())
    seen = SeenSignatures()

    async def events(request: web.Request) -> web.Response:
        headers = request.headers
        if not signed(verifier, await request.read(), request.charset, headers):
            log.info("refused a request to %s: bad signature or timestamp", PATH)
            return web.json_response({"error": "invalid request"}, status=401)
        # Checked and remembered in one step, with no await between: two copies cannot both pass.
        if not seen.first_time(
            headers["X-Slack-Signature"], int(headers["X-Slack-Request-Timestamp"])
        ):
            log.info("refused a request to %s: a replay of one already handled", PATH)
            return web.json_response({"error": "invalid request"}, status=401)
        response: web.Response = await to_aiohttp_response(
            await bolt.async_dispatch(await to_bolt_request(request))
        )
        return response

    web_app.router.add_post(PATH, events)
