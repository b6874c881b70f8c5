"""Every input a fuzz target crashed on, by name: (target, input). Each is a seed of its target
(``seeds.py``) and a test (``test_regressions.py``), so it can never come back unseen.

The inputs are as the fuzzer wrote them (or, where the fuzzer could not reach it, as found by
reading the parser with the fuzzer's question in mind: what else can this raise?).
"""

from __future__ import annotations

from typing import Final

CRASHES: Final[dict[str, tuple[str, bytes]]] = {
    # By reading: json.loads raises RecursionError (not ValueError) on arrays nested about a
    # thousand deep; the fuzzer sees no coverage in the C decoder to lead it there.
    "control-nested-2000-deep": ("relay_control", b'{"type":"stats","id":' + b"[" * 2000),
    # urlsplit raised ValueError ("Invalid IPv6 URL") on an unclosed "[" in the host.
    "link-unclosed-ipv6-bracket": (
        "join_link",
        b"<http://127.0.0\x851:8SSSSSSSSSSSSSSS~SS[SSSSSSSSSSSS#SSSSSPz>",
    ),
    # The handler read the body with request.text(): UnicodeDecodeError, a 500 and a traceback.
    "slack-body-not-utf8": (
        "slack_request",
        b"1800000000\nv0=00\n\ntoken=t&tea1800000001\nv0=00\n\nken=token=t&team_m_id=Tid=5CONCT"
        b"\xff\xff\xff\xff\xffAVET",
    ),
    # hmac.compare_digest raised TypeError on a signature header that is not ASCII.
    "slack-signature-not-ascii": (
        "slack_request",
        b"1800000000\nv0=FFFFFFF" + b"\x95" * 12 + b"00\n\ntoken=t&tea1800000000\nv0=00\n\n"
        b"tLken=t&teTid=5CONCTAVET",
    ),
    # A Content-Type charset that is not ASCII: bytes.decode raised UnicodeEncodeError.
    "slack-charset-not-ascii": (
        "slack_request",
        b"1800000000\nv:=t&tea1800000001\n2\xff0=00\n\nken=token=t\x1c&etamz_m_id=Tid=CT"
        b"\xff\xff\xff\xff\xffAVET",
    ),
    # By reading: int() refuses more than 4,300 digits (ValueError); the fuzzer's inputs stay
    # shorter than such a header.
    "slack-timestamp-5000-digits": ("slack_request", b"1" * 5000 + b"\nv0=00\n\nbody"),
}
