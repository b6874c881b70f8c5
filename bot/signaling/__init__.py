"""The websocket hub: admission, roster and (later) the relay of opaque key and SDP messages."""
