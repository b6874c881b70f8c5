"""Promise 1's storage half: the database holds hashes of secrets, never the secrets."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

from bot.core.models import Admission
from bot.core.service import MeetingService
from bot.secret import REDACTED, Secret
from bot.store.sqlite import SqliteStore
from tests.support.fakes import user


def _raw(secret: str) -> bytes:
    return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))


def _db_bytes(path: Path) -> bytes:
    blobs = b""
    for suffix in ("", "-wal", "-shm"):
        f = Path(str(path) + suffix)
        if f.exists():
            blobs += f.read_bytes()
    return blobs


async def test_no_secret_reaches_disk(
    service: MeetingService, store: SqliteStore, tmp_path: Path
) -> None:
    host = user("hana")
    made = await service.create_room(host, [user(f"u{i}") for i in range(10)], "Secrets")
    more = await service.invite(host, made.room.id, [user("late")])
    issued = [made.host_invite, *made.invites, *more]
    credentials = [i.link.reveal().split("#", 1)[1] for i in issued]
    admissions: list[Admission] = [
        await service.redeem(made.room.id, cred) for cred in credentials[:4]
    ]
    # Resumes keep the token they were made with (its hash) as the previous one: u0's first
    # welcome is lost and it retries with its first token; u1 resumes twice.
    resumed = [await service.resume(a.resume_token.reveal()) for a in admissions[:2]]
    resumed.append(await service.resume(admissions[0].resume_token.reveal()))
    resumed.append(await service.resume(resumed[1].resume_token.reveal()))
    secrets = [c.split(".", 1)[1] for c in credentials]
    secrets += [a.resume_token.reveal().split(".", 1)[1] for a in (*admissions, *resumed)]

    # Read while the store is open (the WAL holds the newest pages) and after it closes.
    for moment in ("open", "closed"):
        if moment == "closed":
            await store.close()
        data = _db_bytes(store.path)
        assert data, "the test must be reading the real database"
        for secret in secrets:
            assert secret.encode() not in data, f"secret in clear on disk ({moment})"
            assert _raw(secret) not in data, f"raw secret bytes on disk ({moment})"
        # What is stored instead: the hash. Its presence shows the scan reads the right bytes.
        assert hashlib.sha256(secrets[0].encode()).digest() in data
    # The previous tokens too are stored as hashes, in their own column.
    with closing(sqlite3.connect(store.path)) as db:
        previous = dict(db.execute("SELECT id, prev_resume_hash FROM participants"))
    # u0's previous token is its first (the retry kept it); u1's is the one it resumed with last.
    for pid, made_with in (
        (admissions[0].participant.id, admissions[0]),
        (admissions[1].participant.id, resumed[1]),
    ):
        secret = made_with.resume_token.reveal().split(".", 1)[1]
        assert previous[pid] == hashlib.sha256(secret.encode()).digest()


def test_secret_types_print_redacted() -> None:
    s = Secret("hunter2-very-secret")
    assert repr(s) == f"Secret('{REDACTED}')"
    assert str(s) == REDACTED
    assert f"{s}" == REDACTED
    assert "hunter2" not in f"{[s]} {s!r} {s!s}"
    assert s.reveal() == "hunter2-very-secret"
    assert s == Secret("hunter2-very-secret")
    assert s != Secret("other")


async def test_records_do_not_print_their_secrets(service: MeetingService) -> None:
    made = await service.create_room(user("hana"), [user("ana")], "Repr")
    link = made.invites[0].link.reveal()
    secret = link.split(".")[-1]
    admission = await service.redeem(made.room.id, link.split("#", 1)[1])
    for record in (made, admission):
        text = repr(record) + str(record)
        assert secret not in text
        assert admission.resume_token.reveal() not in text
