"""The browser client's files (``static/``), read once and served from memory.

The meeting page imports some thirty small modules at once. Served from disk, each request
went through aiohttp's file response (a stat, an open and a sendfile, each a trip to a thread),
so on a loaded core the page spent half a second fetching its own code; from memory it is a
lookup. The files are part of the package and do not change while the server runs. Symlinks
are not followed and nothing outside the folder can be named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

# The types the client's files need; a module script must be served as JavaScript.
TYPES: Final = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


class StaticFiles:
    """``GET /static/{path}`` from a snapshot of ``root`` taken when the server starts."""

    def __init__(self, root: Path) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.suffix not in TYPES:
                continue
            self._files[path.relative_to(root).as_posix()] = (path.read_bytes(), TYPES[path.suffix])

    def __contains__(self, path: str) -> bool:
        return path in self._files

    async def handle(self, request: web.Request) -> web.Response:
        found = self._files.get(request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound(text="No such file.")
        body, content_type = found
        charset = None if content_type.startswith("image/png") else "utf-8"
        return web.Response(body=body, content_type=content_type, charset=charset)
