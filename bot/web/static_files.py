"""The browser client's files (``static/``), read once and served from memory.

The meeting page imports some thirty small modules at once. Served from disk, each request
went through aiohttp's file response (a stat, an open and a sendfile, each a trip to a thread),
so on a loaded core the page spent half a second fetching its own code; from memory it is a
lookup. The files are part of the package and do not change while the server runs. Symlinks
are not followed and nothing outside the folder can be named.

The meeting page names its files under a version, a hash of all of them
(``/static/{version}/app/main.js``), and those responses may be cached for good: the frame
worker imports a dozen of the page's modules again in its own module map, and from the cache
that is no second round of requests before the first frame can be encrypted. A new release has
a new version, so a browser never mixes files of two releases; a version other than the
running one is not found. Unversioned paths stay uncached, as every other response here.
"""

from __future__ import annotations

import hashlib
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
# For the versioned paths only: their bytes can never change under the same URL.
FOREVER: Final = "public, max-age=31536000, immutable"


class StaticFiles:
    """``GET /static/{path}`` from a snapshot of ``root`` taken when the server starts."""

    def __init__(self, root: Path) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.suffix not in TYPES:
                continue
            self._files[path.relative_to(root).as_posix()] = (path.read_bytes(), TYPES[path.suffix])
        digest = hashlib.sha256()
        for name, (body, _) in self._files.items():
            digest.update(b"%d:%s%d:" % (len(name), name.encode(), len(body)) + body)
        self.version: Final = digest.hexdigest()[:16]

    def __contains__(self, path: str) -> bool:
        return path in self._files

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        version, _, rest = path.partition("/")
        versioned = version == self.version
        found = self._files.get(rest if versioned else path)
        if found is None:
            raise web.HTTPNotFound(text="No such file.")
        body, content_type = found
        charset = None if content_type.startswith("image/png") else "utf-8"
        response = web.Response(body=body, content_type=content_type, charset=charset)
        if versioned:
            response.headers["Cache-Control"] = FOREVER
        return response
