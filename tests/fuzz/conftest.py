"""Fixtures of other test modules that the regressions reuse: the Slack HTTP server and fake
Slack (tests/test_slack_http.py), and a relay worker against a fake core
(tests/relay/test_relay_worker.py)."""

from __future__ import annotations

from tests.relay.test_relay_worker import started
from tests.test_slack_http import fake, running

__all__ = ["fake", "running", "started"]
