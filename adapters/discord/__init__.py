"""Discord adapter: the ``/meet`` app command group over discord.py.

The package imports no Discord library, so that ``bot.config`` can read ``settings`` on every
start; ``adapters.discord.adapter``, imported only when Discord is configured, does.
"""

import contextlib
import warnings

with warnings.catch_warnings(), contextlib.suppress(ImportError):
    # discord.py imports the standard library's audioop for voice, which Conclave never uses,
    # and Python 3.11+ warns about that import. Import it first, here, with exactly that
    # warning silenced, so that no module of this package that imports discord sets it off.
    # (A small built-in module; from Python 3.13 on it is not in the standard library, and
    # there is nothing to silence.)
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import audioop  # noqa: F401
