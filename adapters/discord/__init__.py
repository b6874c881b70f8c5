"""Discord adapter: the ``/meet`` app command group over discord.py."""

import warnings

with warnings.catch_warnings():
    # discord.py imports the standard library's audioop for voice, which Conclave never uses,
    # and Python 3.11+ warns about that import. Silence exactly that warning, here, once.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord  # noqa: F401

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
