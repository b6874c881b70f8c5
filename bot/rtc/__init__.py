"""aiortc glue shared by the relay worker and the Python client; the core never imports it.

- ``profile``: which codec each kind of media travels as, and its RTP clock (plain Python);
- ``peer``: every peer connection, made with the configured ICE servers, and codec choice;
- ``sending`` and ``receiving``: the relay's taps that copy RTP without decoding it;
- ``inbound``, ``nack`` and ``rationing``: what bounds the work a hostile peer can cause;
- ``internals``: the one package that reaches into aiortc's and aioice's private attributes.

All but ``profile`` and ``rationing`` import aiortc (``inbound``: pylibsrtp). Nothing is
imported here, so that importing one module costs only that module.
"""
