"""The web server's plain HTTP side: the meeting page a join link opens (the health check is
in tests/test_healthz.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from bot.web.static_files import StaticFiles
from tests.support.fakes import user
from tests.support.secrets_scan import secret_shaped
from tests.support.server import Running, serve


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(tmp_path) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_join_link_serves_the_meeting_page_under_a_strict_policy(
    server: Running, http: aiohttp.ClientSession
) -> None:
    made = await server.app.service.create_room(user("hana"), [user("ana")], "Sync")
    link = made.invites[0].link.reveal()
    secret = urlsplit(link).fragment.partition(".")[2]
    room_id = made.room.id

    # What a browser requests for the link: the path only; the fragment never leaves it.
    async with http.get(f"{server.base_url}/j/{room_id}") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.charset == "utf-8"
        body = await response.text()
        headers = response.headers

    # The meeting page: its code is files of this server, nothing inline.
    assert 'id="join-button"' in body
    scripts = re.findall(r"<script\b[^>]*>", body)
    assert scripts, "the page loads no script"
    assert all(re.search(r'\ssrc="\.\./static/[^"]+\.js"', s) for s in scripts), scripts
    assert re.findall(r"<script\b[^>]*>(.*?)</script>", body, re.S) == [""] * len(scripts)
    lowered = body.lower()
    assert "<style" not in lowered
    assert not re.search(r"\sstyle\s*=", lowered), "inline style on the page"
    assert not re.search(r"\son[a-z]+\s*=", lowered), "inline event handler on the page"
    assert "javascript:" not in lowered
    assert "<iframe" not in lowered
    assert "<form" not in lowered
    assert not re.search(r'(src|href)="(https?:)?//', lowered), "something from another origin"

    assert headers["Referrer-Policy"] == "no-referrer"
    directives = {
        d.strip().split(" ", 1)[0]: d.strip().split(" ")[1:]
        for d in headers["Content-Security-Policy"].split(";")
    }
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["worker-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'", f"ws://127.0.0.1:{server.port}"]
    assert directives["img-src"] == ["'self'", "data:", "blob:"]
    assert directives["media-src"] == ["'self'", "blob:"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"

    # No secret anywhere in the response.
    everything = body + "\n" + "\n".join(f"{k}: {v}" for k, v in headers.items())
    assert secret not in everything
    assert secret_shaped(everything) == []


async def test_the_page_policy_never_takes_a_host_header_it_cannot_trust(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """The websocket origin comes from the request's Host: one that could end the directive and
    start another is left out, leaving only 'self'."""
    made = await server.app.service.create_room(user("hana"), [user("ana")], "Sync")
    url = f"{server.base_url}/j/{made.room.id}"
    async with http.get(url, headers={"Host": "evil; script-src *"}) as response:
        assert response.status == 200
        csp = response.headers["Content-Security-Policy"]
    assert "evil" not in csp
    assert "connect-src 'self';" in csp
    assert "script-src 'self';" in csp and "*" not in csp


async def test_the_meeting_pages_files_are_served_with_their_types(
    server: Running, http: aiohttp.ClientSession
) -> None:
    for path, kind in (
        ("/static/app/main.js", "javascript"),
        ("/static/worker.js", "javascript"),
        ("/static/app/style.css", "text/css"),
        ("/static/app/meeting.css", "text/css"),
    ):
        async with http.get(f"{server.base_url}{path}") as response:
            assert response.status == 200, path
            assert kind in response.content_type, (path, response.content_type)
            assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_page_names_its_files_under_a_version_cached_for_good(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """The page's files are named under a hash of all of them, so that the frame worker's
    imports come from the cache; a browser holding another release's page gets nothing."""
    made = await server.app.service.create_room(user("hana"), [user("ana")], "Sync")
    async with http.get(f"{server.base_url}/j/{made.room.id}") as response:
        body = await response.text()
    named = re.findall(r'(?:src|href)="\.\./static/([0-9a-f]{16})/([^"]+)"', body)
    versions = {version for version, _ in named}
    assert len(versions) == 1, versions
    (version,) = versions
    files = {path for _, path in named}
    # The worker and what only it imports are fetched with the page, not after it.
    assert {"app/main.js", "worker.js", "e2ee/prefix.js", "app/style.css"} <= files
    assert not re.search(r'"\.\./static/(?![0-9a-f]{16}/)', body), "a file named without it"

    for path in sorted(files):
        async with http.get(f"{server.base_url}/static/{version}/{path}") as response:
            assert response.status == 200, path
            assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    async with http.get(f"{server.base_url}/static/app/main.js") as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
    other = "0" * 16 if version != "0" * 16 else "1" * 16
    async with http.get(f"{server.base_url}/static/{other}/app/main.js") as response:
        assert response.status == 404
        assert response.headers["Cache-Control"] == "no-store"


def test_the_version_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "a.js").write_text("export const a = 1;\n")
    (tmp_path / "b.js").write_text("export const b = 2;\n")
    first = StaticFiles(tmp_path).version
    assert StaticFiles(tmp_path).version == first
    (tmp_path / "b.js").write_text("export const b = 3;\n")
    assert StaticFiles(tmp_path).version != first
    (tmp_path / "b.js").write_text("export const b = 2;\n")
    (tmp_path / "app" / "c.js").write_text("")
    assert StaticFiles(tmp_path).version != first


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/web/app.py",
        "/static/app/../../app.py",
        "/static/..%2fapp.py",
        "/static/app/",
        "/static/nothing.js",
        "/static/app/main.js.map",
    ],
)
async def test_nothing_but_the_clients_own_files_is_served(
    path: str, server: Running, http: aiohttp.ClientSession
) -> None:
    """Only the files of static/ present when the server started: no path out of the folder,
    no listing, no guess."""
    async with http.get(f"{server.base_url}{path}") as response:
        assert response.status == 404, (path, response.status)
        assert "import" not in await response.text()


@pytest.mark.parametrize(
    "room_id",
    [
        "a.b",
        "..",
        "room.with.dots",
        "x" * 65,
        "bad%20room",
        "semi;colon",
        "%3Cscript%3E",
        "room%0A",  # "$" in a pattern used with match would let a final newline through
    ],
)
async def test_join_page_for_an_invalid_room_id_is_404(
    room_id: str, server: Running, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.base_url}/j/{room_id}") as response:
        assert response.status == 404
        body = await response.text()
        assert "<script" not in body.lower()
        assert room_id not in body  # the refusal does not echo what it was given


async def test_error_responses_carry_the_security_headers(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """The headers middleware promises them on everything the server sends, refusals included."""
    async with http.get(f"{server.base_url}/j/a.b") as response:
        assert response.status == 404
        headers = response.headers
    assert headers.get("Referrer-Policy") == "no-referrer"
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("X-Frame-Options") == "DENY"


async def test_longest_valid_room_id_is_served(
    server: Running, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.base_url}/j/{'x' * 64}") as response:
        assert response.status == 200


async def test_unknown_paths_are_404(server: Running, http: aiohttp.ClientSession) -> None:
    for path in ("/", "/j/", "/j", "/admin", "/j/abc/extra"):
        async with http.get(f"{server.base_url}{path}") as response:
            assert response.status == 404, path


async def test_websocket_path_without_upgrade_is_refused(
    server: Running, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.base_url}/ws") as response:
        # 400 Bad Request, aiohttp's answer to a missing upgrade; not a 404 (the route exists)
        # nor a 5xx (nothing broke).
        assert response.status == 400


async def test_with_port_zero_links_name_the_port_the_server_got(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """``serve`` asks for ``server.port = 0``: the system picks the port, and the settings,
    the links and the meeting page's policy all carry the one the server listens on, never 0."""
    assert server.app.settings.server.port == server.port != 0
    made = await server.app.service.create_room(user("hana"), [user("ana")], "Sync")
    link = urlsplit(made.invites[0].link.reveal())
    assert link.netloc == f"127.0.0.1:{server.port}"
    async with http.get(f"http://{link.netloc}{link.path}") as response:
        assert response.status == 200
        assert f"ws://{link.netloc}" in response.headers["Content-Security-Policy"]
