"""Slack adapter: ``/meet`` over slack-bolt, in Socket Mode or HTTP mode."""

from adapters.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]
