"""The Slack app manifest declares what the adapter uses: /meet, four scopes, Socket Mode."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parent.parent / "config" / "slack-manifest.yml"


def test_manifest_has_the_command_the_scopes_and_socket_mode() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/meet" and command["should_escape"] is True
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert sorted(scopes) == ["chat:write", "commands", "im:write", "users:read"]
    assert manifest["settings"]["socket_mode_enabled"] is True
