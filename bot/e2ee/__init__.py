"""End-to-end encryption for Conclave meetings: pure, synchronous, no I/O.

The byte layouts are specified in ``docs/PROTOCOL.md``; the modules are:

- ``sframe``: RFC 9605 SFrame (header, key derivation, the five cipher suites, a stateful context);
- ``media``: the clear-prefix profile that turns an encoded VP8/Opus frame into
  ``clear_prefix || SFrame``;
- ``kid`` and ``senderkeys``: per-participant sender keys, ratcheted on join, replaced on leave;
- ``identity`` and ``announce``: per-meeting key pairs, announced in one signed statement;
- ``roster``: which announced keys a client may use, and rosters only a lying server can show;
- ``transport``: the signed HPKE key-transport message;
- ``code``: the security code participants compare out of band, over ids and both keys.

Nothing here reads a clock, a socket or a file: times are passed in as ``now`` (monotonic seconds).
"""
