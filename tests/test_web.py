"""The web server's plain HTTP side: health check and the page a join link opens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

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


async def test_healthz(server: Running, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.base_url}/healthz") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == {"status": "ok"}


async def test_join_page_explains_the_command_line_client(
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

    assert "conclave join" in body
    assert f"{server.base_url}/j/{room_id}#" in body  # the shape of the command to paste
    lowered = body.lower()
    # Nothing on the page can run, submit, or read the fragment.
    assert "<script" not in lowered
    assert "<form" not in lowered
    assert "<iframe" not in lowered
    assert "javascript:" not in lowered
    assert not re.search(r"\son[a-z]+\s*=", lowered), "inline event handler on the page"
    for reader in ("location.hash", "window.location", "document.location", "document.url"):
        assert reader not in lowered

    assert headers["Referrer-Policy"] == "no-referrer"
    csp = headers["Content-Security-Policy"]
    directives = [d.strip() for d in csp.split(";")]
    assert "default-src 'none'" in directives
    assert not any(d.startswith("script-src") for d in directives)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"

    # No secret anywhere in the response.
    everything = body + "\n" + "\n".join(f"{k}: {v}" for k, v in headers.items())
    assert secret not in everything
    assert secret_shaped(everything) == []


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
    the links and the join page all carry the one the server listens on, never 0."""
    assert server.app.settings.server.port == server.port != 0
    made = await server.app.service.create_room(user("hana"), [user("ana")], "Sync")
    link = urlsplit(made.invites[0].link.reveal())
    assert link.netloc == f"127.0.0.1:{server.port}"
    async with http.get(f"http://{link.netloc}{link.path}") as response:
        assert response.status == 200
        assert f"http://{link.netloc}{link.path}#" in await response.text()
