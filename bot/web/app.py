"""Build the aiohttp application from the parts the composition root made."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from bot.metrics import CONTENT_TYPE, Metrics
from bot.relay import control
from bot.secret import Secret
from bot.signaling.hub import Hub
from bot.web.health import Health
from bot.web.meeting_page import STATIC_DIR, meeting_handler
from bot.web.static_files import StaticFiles

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Everything the browser client needs comes from this server and nothing else: no inline script,
# no eval, no other origin. Responses that set their own policy (the meeting page) keep it.
STRICT_CSP = (
    "default-src 'none'; script-src 'self'; worker-src 'self'; connect-src 'self'; "
    "style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_SECURITY_HEADERS = {
    # Nothing here should ever leak a URL onward, be framed, be cached or be sniffed.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Content-Security-Policy": STRICT_CSP,
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as refusal:
        # Error responses are raised, not returned; they need the same headers.
        for name, value in _SECURITY_HEADERS.items():
            refusal.headers.setdefault(name, value)
        raise
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def body_deadline(seconds: float) -> Middleware:
    """A request's body must arrive within ``seconds``; aiohttp itself would wait for ever.

    (Headers are covered by the server's keep-alive timer; see ``make_runner``.) The body is
    read here, within the client's size limit, and handlers read the same bytes again.
    """

    @web.middleware
    async def read_body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                await asyncio.wait_for(request.read(), seconds)
            except TimeoutError:
                raise web.HTTPRequestTimeout(
                    text="The request body did not arrive in time."
                ) from None
        return await handler(request)

    return read_body_in_time


def make_runner(app: web.Application, idle_timeout: float) -> web.AppRunner:
    """The runner with timeouts for connections that are idle or slow to send a request.

    aiohttp arms its keep-alive timer when a connection opens and after each response, and
    closes the connection if no complete request has arrived when it fires: that one timer
    bounds both an idle keep-alive connection and a half-sent request line or headers.
    Websockets are not affected: the timer only closes connections waiting for a request.
    """
    return web.AppRunner(app, handle_signals=False, keepalive_timeout=idle_timeout)


def metrics_handler(metrics: Metrics, token: Secret) -> Handler:
    """``/metrics``, refused with 401 unless the request carries ``token`` as its bearer token
    (when ``token`` is set)."""

    async def scrape(request: web.Request) -> web.Response:
        if token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # Secret equality is constant-time: the answer's timing says nothing of the token.
            if scheme.lower() != "bearer" or Secret(given.strip()) != token:
                raise web.HTTPUnauthorized(
                    text="A bearer token is required.",
                    headers={"WWW-Authenticate": 'Bearer realm="conclave-metrics"'},
                )
        return web.Response(body=await metrics.scrape(), headers={"Content-Type": CONTENT_TYPE})

    return scrape


def metrics_app(scrape: Handler, idle_timeout: float = 30.0) -> web.Application:
    """The application of the separate metrics listener (``metrics.listen``): /metrics only."""
    app = web.Application(middlewares=[security_headers, body_deadline(idle_timeout)])
    app.router.add_get("/metrics", scrape)
    return app


def create_app(
    hub: Hub,
    base_url: str,
    relay_control: Handler | None = None,
    *,
    idle_timeout: float = 30.0,
    health: Health | None = None,
    metrics: Handler | None = None,
) -> web.Application:
    """The public application. ``metrics`` is served at /metrics only when given: the
    composition root gives it when a token guards it and no separate listener is set."""
    app = web.Application(middlewares=[security_headers, body_deadline(idle_timeout)])

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    if health is None:
        app.router.add_get("/healthz", healthz)
    else:
        app.router.add_get("/healthz", health.handle)
        app.on_cleanup.append(health.close)
    if metrics is not None:
        app.router.add_get("/metrics", metrics)
    static = StaticFiles(STATIC_DIR)
    app.router.add_get("/j/{room_id}", meeting_handler(base_url, static.version))
    app.router.add_get("/ws", hub.handle)
    app.router.add_get("/static/{path:.+}", static.handle)
    if relay_control is not None:
        app.router.add_get(control.ROUTE, relay_control)
    return app
