"""Conclave in Slack HTTP mode against a local fake Slack, driven one ``/meet`` at a time."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.core.links import JoinLink, parse_link
from tests.support.fake_slack import BOT_TOKEN, FakeSlack
from tests.support.server import Running, serve
from tests.test_slack_http import SIGNING_SECRET, button_url, command

_keys = itertools.count()


@asynccontextmanager
async def serve_slack(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Running]:
    """Start ``fake``, then the application with its Slack adapter in HTTP mode talking to
    it; stop both afterwards."""
    await fake.start()
    env = {
        "CONCLAVE_SLACK_MODE": "http",
        "CONCLAVE_SLACK_BOT_TOKEN": BOT_TOKEN,
        "CONCLAVE_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "CONCLAVE_SLACK_API_URL": fake.api_url,
    }
    try:
        async with serve(tmp_path, env) as running:
            yield running
    finally:
        await fake.stop()


async def meet(
    running: Running, fake: FakeSlack, text: str, user_id: str = "UHANA", replies: int = 1
) -> list[dict[str, Any]]:
    """Type ``/meet TEXT`` in Slack; the answers posted to this command's response_url."""
    key = f"k{next(_keys)}"
    status, _ = await command(running, fake, text, user_id, key)
    assert status == 200

    def mine() -> list[dict[str, Any]]:
        return [r for r in fake.responses if r["_key"] == key]

    await fake.wait_for(lambda: len(mine()) >= replies)
    return mine()


def dm_link(fake: FakeSlack, user_id: str, index: int = -1) -> JoinLink:
    """The link in the ``index``-th direct message the fake took for ``user_id``."""
    return parse_link(button_url(fake.dms()[user_id][index]))
