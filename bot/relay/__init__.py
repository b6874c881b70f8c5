"""The media relay: a worker process that forwards encrypted RTP between a room's participants.

``control``, ``tickets`` and ``offers`` are shared with the core (``pool`` and ``local`` are the
core's) and import no media library; ``sfu``, ``tracks`` and ``worker`` import aiortc, through
``bot.rtc``, and run only in the worker.
Nothing is imported here, so that ``import bot.relay.control`` stays cheap for the core.
"""
