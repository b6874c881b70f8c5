"""The local console adapter: `/meet` lines on stdin, replies and "DMs" on stdout."""

from adapters.console.adapter import ConsoleAdapter, stdin_lines

__all__ = ["ConsoleAdapter", "stdin_lines"]
