"""Build the aiohttp application from the parts the composition root made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.core.links import is_id
from bot.relay import control
from bot.signaling.hub import Hub
from bot.web.join_page import render_join_page

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_SECURITY_HEADERS = {
    # Nothing here should ever leak a URL onward, be framed, be cached or be sniffed.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
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


def create_app(hub: Hub, base_url: str, relay_control: Handler | None = None) -> web.Application:
    app = web.Application(middlewares=[security_headers])

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def join_page(request: web.Request) -> web.Response:
        room_id = request.match_info["room_id"]
        if not is_id(room_id):
            raise web.HTTPNotFound(text="No such meeting link.")
        response = web.Response(
            text=render_join_page(base_url, room_id), content_type="text/html", charset="utf-8"
        )
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
        )
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/j/{room_id}", join_page)
    app.router.add_get("/ws", hub.handle)
    if relay_control is not None:
        app.router.add_get(control.ROUTE, relay_control)
    return app
