"""Numbered schema migrations, applied in order and recorded in ``PRAGMA user_version``.

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: rooms, invites, participant sessions and the append-only audit log.
    """
    CREATE TABLE rooms (
        id           TEXT PRIMARY KEY,
        topic        TEXT NOT NULL,
        platform     TEXT NOT NULL,
        workspace    TEXT NOT NULL,
        host_user_id TEXT NOT NULL,
        host_name    TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('open', 'locked', 'ended')),
        lobby        INTEGER NOT NULL CHECK (lobby IN (0, 1)),
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL,
        ended_at     REAL
    );
    CREATE INDEX rooms_by_host ON rooms (platform, workspace, host_user_id, state);
    CREATE INDEX rooms_by_expiry ON rooms (state, expires_at);

    CREATE TABLE invites (
        id           TEXT PRIMARY KEY,
        room_id      TEXT NOT NULL REFERENCES rooms (id),
        user_id      TEXT NOT NULL,
        display_name TEXT NOT NULL,
        role         TEXT NOT NULL CHECK (role IN ('host', 'guest')),
        secret_hash  BLOB NOT NULL CHECK (length(secret_hash) = 32),
        state        TEXT NOT NULL CHECK (state IN ('issued', 'redeemed', 'revoked', 'expired')),
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL,
        redeemed_at  REAL,
        CHECK ((state = 'redeemed') = (redeemed_at IS NOT NULL))
    );
    CREATE INDEX invites_by_room ON invites (room_id, state);
    CREATE INDEX invites_by_expiry ON invites (state, expires_at);

    CREATE TABLE participants (
        id           TEXT PRIMARY KEY,
        room_id      TEXT NOT NULL REFERENCES rooms (id),
        invite_id    TEXT NOT NULL UNIQUE REFERENCES invites (id),
        user_id      TEXT NOT NULL,
        display_name TEXT NOT NULL,
        role         TEXT NOT NULL CHECK (role IN ('host', 'guest')),
        sender_index INTEGER NOT NULL CHECK (sender_index >= 1),
        resume_hash  BLOB NOT NULL CHECK (length(resume_hash) = 32),
        state        TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
        joined_at    REAL NOT NULL,
        UNIQUE (room_id, sender_index)
    );

    CREATE TABLE audit (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        at      REAL NOT NULL,
        room_id TEXT,
        actor   TEXT NOT NULL,
        event   TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_by_room ON audit (room_id, seq);
    CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 2: the previous resume token's hash, so that a resume whose welcome was lost can be retried.
    """
    ALTER TABLE participants ADD COLUMN prev_resume_hash BLOB
        CHECK (prev_resume_hash IS NULL OR length(prev_resume_hash) = 32);
    """,
    # 3: when the host let a guest out of the lobby, so that admission outlives the core's
    # memory. Guests admitted before the upgrade are found in the audit log.
    """
    ALTER TABLE participants ADD COLUMN admitted_at REAL;
    UPDATE participants SET admitted_at = (
        SELECT min(a.at) FROM audit a
        WHERE a.event = 'participant_admitted' AND a.room_id = participants.room_id
            AND json_extract(a.detail, '$.participant') = participants.id
    );
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
