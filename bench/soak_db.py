"""Rooms, invites and sessions left in a wrong state, read straight from the SQLite database.

Two looks. While the server runs, after the churn has stopped and every room has settled
(read-only; WAL lets a reader in beside the server), the sessions the database holds active
must be exactly the ones the soak's clients hold, and every one the soak saw removed must be
revoked. After every meeting has been ended and the server stopped, nothing may be left open.
Each check is a query whose rows are the wrong ones; DEFINITIONS says what each one means.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

# Once every meeting has ended.
AFTER_END: dict[str, tuple[str, str]] = {
    "room not ended": (
        "a room the soak ended is not in state 'ended' with an end time",
        "SELECT id FROM rooms WHERE state != 'ended' OR ended_at IS NULL",
    ),
    "room ended twice or never on record": (
        "an ended room without exactly one 'room_ended' audit event",
        "SELECT r.id FROM rooms r WHERE (SELECT count(*) FROM audit a WHERE a.room_id = r.id "
        "AND a.event = 'room_ended') != 1",
    ),
    "invite still open": (
        "an invite still 'issued' in an ended room (ending revokes every unused invite)",
        "SELECT i.id FROM invites i JOIN rooms r ON r.id = i.room_id "
        "WHERE r.state = 'ended' AND i.state = 'issued'",
    ),
    "session still active": (
        "a participant session still 'active' in an ended room (its resume token would work)",
        "SELECT p.id FROM participants p JOIN rooms r ON r.id = p.room_id "
        "WHERE r.state = 'ended' AND p.state = 'active'",
    ),
}
# At any time.
ALWAYS: dict[str, tuple[str, str]] = {
    "redeemed invite without a session": (
        "an invite marked 'redeemed' that no participant session was made from",
        "SELECT i.id FROM invites i WHERE i.state = 'redeemed' "
        "AND NOT EXISTS (SELECT 1 FROM participants p WHERE p.invite_id = i.id)",
    ),
    "session from an unspent invite": (
        "a session whose invite is still 'issued' or 'expired' (it was never spent)",
        "SELECT p.id FROM participants p JOIN invites i ON i.id = p.invite_id "
        "WHERE i.state IN ('issued', 'expired')",
    ),
    "two live invites for one person": (
        "a room and invitee with more than one invite that is 'issued' or 'redeemed' "
        "(a reissue must revoke the one it replaces)",
        "SELECT room_id || ' ' || user_id FROM invites WHERE state IN ('issued', 'redeemed') "
        "GROUP BY room_id, user_id HAVING count(*) > 1",
    ),
    "two active sessions for one person": (
        "a room and invitee with more than one active session (a reissue or kick must "
        "revoke the old one)",
        "SELECT room_id || ' ' || user_id FROM participants WHERE state = 'active' "
        "GROUP BY room_id, user_id HAVING count(*) > 1",
    ),
}


def definitions() -> list[str]:
    """Each check's name and meaning, to print with the figures."""
    live = [
        "active session nobody holds: a session 'active' in a room the soak is in, that no "
        "client of the soak holds",
        "held session not active: a session a connected client holds that is not 'active'",
        "removed session active: a participant the host kicked or a reissue removed, still "
        "'active'",
        "removal not audited: a participant the soak saw removed without exactly one "
        "'participant_kicked' audit event",
    ]
    rest = [f"{name}: {meaning}" for name, (meaning, _) in {**ALWAYS, **AFTER_END}.items()]
    return live + rest


@dataclass(frozen=True)
class Wrong:
    check: str
    rows: list[str]


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)


def _run(conn: sqlite3.Connection, checks: Mapping[str, tuple[str, str]]) -> list[Wrong]:
    out = []
    for name, (_, sql) in checks.items():
        rows = [str(r[0]) for r in conn.execute(sql)]
        if rows:
            out.append(Wrong(name, rows))
    return out


def while_running(
    db: Path, held: Mapping[str, Collection[str]], removed: Collection[str]
) -> list[Wrong]:
    """``held``: by room id, the participant ids the soak's clients hold."""
    conn = _connect(db)
    try:
        wrong = _run(conn, ALWAYS)
        active: dict[str, set[str]] = {room: set() for room in held}
        states: dict[str, str] = {}
        for pid, room, state in conn.execute("SELECT id, room_id, state FROM participants"):
            states[pid] = state
            if state == "active" and room in active:
                active[room].add(pid)
        stray = sorted(p for room, ids in held.items() for p in active[room] - set(ids))
        inactive = sorted(p for ids in held.values() for p in ids if states.get(p) != "active")
        kept = sorted(p for p in removed if states.get(p) == "active")
        kicks: dict[str, int] = {}
        sql = "SELECT json_extract(detail, '$.participant') FROM audit WHERE event = ?"
        for (pid,) in conn.execute(sql, ("participant_kicked",)):
            kicks[pid] = kicks.get(pid, 0) + 1
        unaudited = sorted(p for p in removed if kicks.get(p, 0) != 1)
        for name, rows in (
            ("active session nobody holds", stray),
            ("held session not active", inactive),
            ("removed session active", kept),
            ("removal not audited", unaudited),
        ):
            if rows:
                wrong.append(Wrong(name, rows))
        return wrong
    finally:
        conn.close()


def after_end(db: Path) -> tuple[list[Wrong], dict[str, int]]:
    """What is wrong once every meeting has ended, and how many of each record there are."""
    conn = _connect(db)
    try:
        counts = {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("rooms", "invites", "participants", "audit")
        }
        return _run(conn, {**ALWAYS, **AFTER_END}), counts
    finally:
        conn.close()
