"""Keep the chat libraries' DEBUG output out of the logs.

slack_sdk and discord.py log whole request bodies (and URLs with interaction tokens) at DEBUG.
Our direct messages carry one-time invite links, so those loggers never go below INFO, whatever
the root level: a debug log must stay safe to paste into a bug report.
"""

from __future__ import annotations

import logging

CHATTY = (
    "slack_sdk",
    "slack_bolt",
    "discord.http",
    "discord.webhook",
    "discord.gateway",
    "discord.client",
    "discord.state",
)


def quiet_chat_libraries() -> None:
    for name in CHATTY:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)
