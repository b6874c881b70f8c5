"""Slack adapter: ``/meet`` over slack-bolt, in Socket Mode or HTTP mode.

The package imports no Slack library, so that ``bot.config`` can read ``settings`` on every
start; ``adapters.slack.adapter``, imported only when Slack is configured, does.
"""
