"""The media relay: a worker process that forwards encrypted RTP between a room's participants.

``tickets`` and ``control`` are shared with the core and import no media library; ``sfu``,
``worker`` and ``aiortc_internals`` import aiortc and run only in the worker (and in clients).
Nothing is imported here, so that ``import bot.relay.control`` stays cheap for the core.
"""
