"""Letting go of a finished websocket: the reference cycles aiohttp leaves behind, untied.

Left alone, every closed signaling websocket (its request, socket objects, parser and
buffers: 4-8 KiB) sits in a reference cycle until Python's next *full* garbage collection,
which comes only once the objects waiting for one reach a quarter of all long-lived objects,
start-up imports included. The soak run's churn (thousands of connections in five minutes)
grew the core by about 10 MiB before that first full collection, and what it then freed stayed
with the process. Untied, a connection's objects go by reference counting as soon as aiohttp
lets go of them.

Both cycles are aiohttp's (as of 3.14):

- With a heartbeat, ``WebSocketResponse.prepare`` hands the connection's protocol a callback,
  a bound method of the websocket, which the protocol keeps after the connection is lost:
  protocol -> websocket -> request -> protocol. The same callback re-arms the heartbeat of a
  websocket that is already closing when the peer's closing frame comes in, which kept each
  websocket the server closed for another 45 s. ``drop_heartbeat`` removes it as soon as the
  session is over (the one private name used here).
- A websocket whose peer vanished keeps the exception it met (``exception()``); its traceback
  holds the frames it was raised through, and they hold the websocket. ``clear_failure``
  clears those frames' variables once the websocket is closed; the exception itself stays.

``tests/test_websocket_cycles.py`` checks both with the cyclic garbage collector switched off.
"""

from __future__ import annotations

import traceback

from aiohttp import web


def drop_heartbeat(request: web.Request) -> None:
    """The session is over: its connection needs no heartbeat, even while it closes."""
    request.protocol._data_received_cb = None


def clear_failure(ws: web.WebSocketResponse) -> None:
    """Clear the frames held by the exception a closed websocket keeps, and by its causes."""
    seen: set[int] = set()
    pending = [ws.exception()]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        # Frames still running are left as they are (clear_frames skips them).
        traceback.clear_frames(exc.__traceback__)
        pending += [exc.__cause__, exc.__context__]
