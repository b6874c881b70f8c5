"""The page a join link opens: the browser meeting client (``static/meeting.html``).

The page is the same for every room: its script reads the room from the path and the invite
key from the fragment, which browsers never send, so nothing secret ever reaches this handler.
Its policy lets the page load only this server's own files and talk only to this server
(``connect-src`` names the websocket origin explicitly: not every browser counts ``ws:`` and
``wss:`` under ``'self'``).
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from bot.core.links import is_id

STATIC_DIR = Path(__file__).parent / "static"
PAGE = STATIC_DIR / "meeting.html"

ENTRY = "app/main.js"
WORKER = "worker.js"
# Static imports and re-exports of a module: `import ... from "./x.js"`, `import "./x.js"`.
_IMPORT = re.compile(r'^(?:import|export)\b[^;]*?["\'](\.{1,2}/[\w./-]+\.js)["\'];?$', re.M)
# A Host header that can be an origin: a DNS name or address and a port, nothing that could
# end the directive or start another one.
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def module_graph(entry: str = ENTRY) -> list[str]:
    """Every module the page's script imports, directly or not, as paths under static/, the
    entry first."""
    found: dict[str, None] = {}
    queue = [entry]
    while queue:
        module = queue.pop(0)
        if module in found:
            continue
        found[module] = None
        folder = posixpath.dirname(module)
        for target in _IMPORT.findall((STATIC_DIR / module).read_text(encoding="utf-8")):
            queue.append(posixpath.normpath(posixpath.join(folder, target)))
    return list(found)


@functools.cache
def page_bytes(version: str) -> bytes:
    """The page, its files named under the static files' ``version`` (cacheable for good), and
    told every module its script and its frame worker will import (``modulepreload``): the
    browser fetches them all at once instead of one level of imports after another, and the
    worker finds its own in the cache."""
    modules = dict.fromkeys(module_graph()[1:] + module_graph(WORKER))
    links = "".join(
        f'    <link rel="modulepreload" href="../static/{module}" />\n' for module in modules
    )
    html = PAGE.read_text(encoding="utf-8")
    anchor = '    <script type="module"'
    assert anchor in html
    html = html.replace(anchor, links + anchor, 1)
    return html.replace('"../static/', f'"../static/{version}/').encode()


def meeting_csp(request: web.Request, base_url: str) -> str:
    """The page's policy: this server's files only, and its websocket."""
    connect = "'self'"
    host = request.host
    if _HOST.fullmatch(host):
        secure = request.secure or urlsplit(base_url).scheme == "https"
        connect += f" {'wss' if secure else 'ws'}://{host}"
    return (
        f"default-src 'none'; script-src 'self'; worker-src 'self'; connect-src {connect}; "
        "style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def meeting_handler(
    base_url: str, version: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /j/{room}``; ``version`` is the static files' (StaticFiles.version)."""

    async def meeting_page(request: web.Request) -> web.Response:
        if not is_id(request.match_info["room_id"]):
            raise web.HTTPNotFound(text="No such meeting link.")
        response = web.Response(body=page_bytes(version), content_type="text/html", charset="utf-8")
        response.headers["Content-Security-Policy"] = meeting_csp(request, base_url)
        # Camera, microphone and screen capture for this page only, never for a frame.
        response.headers["Permissions-Policy"] = (
            "camera=(self), microphone=(self), display-capture=(self), speaker-selection=(self)"
        )
        return response

    return meeting_page
