"""The pieces of ``bench/relay_capacity.py``: a load generator that runs beside a relay worker.

``wire`` is the packet format, ``sdp`` reads what a negotiation settled, ``fastpath`` takes a
connected aiortc peer connection's SRTP keys and UDP socket, ``generator`` is one load
generator process, ``core`` plays the core (control websocket, workers, generators), and
``worker_entry`` starts a worker from a given source tree (the current one or a baseline).
"""
