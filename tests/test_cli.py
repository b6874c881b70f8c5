"""The ``conclave`` command, run as a real process: its exit codes and its words for people."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import bot
from tests.support.fakes import refusing_port
from tests.support.proc import CLI_TIMEOUT, clean_env, conclave_env, run_bot

pytestmark = pytest.mark.slow


def one_line_error(stderr: str) -> str:
    """The single line the CLI printed for people; fails on a traceback or a wall of text."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("conclave: "), stderr
    return lines[0]


# --- check-config -----------------------------------------------------------------------------


def test_check_config_with_an_invalid_variable_exits_2_naming_the_key(tmp_path: Path) -> None:
    env = clean_env(CONCLAVE_SERVER_PORT="abc")
    result = run_bot(["check-config"], env, tmp_path)
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert "config error" in line
    assert "server.port" in line
    assert "abc" in line
    assert "configuration OK" not in result.stdout


def test_check_config_with_an_unknown_variable_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_bot(["check-config"], clean_env(CONCLAVE_SERVER_PROT="1"), tmp_path)
    assert result.returncode == 2
    assert "CONCLAVE_SERVER_PROT" in one_line_error(result.stderr)


def test_check_config_with_a_bad_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[meetings]\ndefault_ttl = "forever"\n', encoding="utf-8")
    result = run_bot(["check-config", "--config", str(path)], clean_env(), tmp_path)
    assert result.returncode == 2
    assert "meetings.default_ttl" in one_line_error(result.stderr)


def test_check_config_with_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_bot(["check-config", "--config", "nope.toml"], clean_env(), tmp_path)
    assert result.returncode == 2
    assert "nope.toml" in one_line_error(result.stderr)


def test_check_config_prints_the_effective_settings(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nhost = "127.0.0.3"\n[logging]\nlevel = "debug"\n', encoding="utf-8")
    env = conclave_env(9301, tmp_path / "x.db", CONCLAVE_MEETINGS_INVITE_TTL="2h")
    result = run_bot(["check-config", "--config", str(path)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "configuration OK" in out
    assert str(path) in out  # where the settings came from
    for section in ("[server]", "[storage]", "[meetings]", "[signaling]", "[logging]"):
        assert section in out
    assert 'host = "127.0.0.3"' in out  # from the file
    assert "port = 9301" in out  # from the environment
    assert f'path = "{tmp_path / "x.db"}"' in out
    assert 'invite_ttl = "2h"' in out
    assert 'level = "debug"' in out
    assert not (tmp_path / "x.db").exists()  # checking touches nothing


def test_check_config_with_no_file_uses_the_defaults(tmp_path: Path) -> None:
    result = run_bot(["check-config"], clean_env(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "embedded defaults" in result.stdout
    assert "port = 8080" in result.stdout


# --- join -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        "not a link",
        "ftp://127.0.0.1/j/room#iabc.def",
        "http://127.0.0.1:9/j/room",  # no invite key
        "http://127.0.0.1:9/j/room#short.secret",
        "http://127.0.0.1:9/nothing-here#iabcdefghijk." + "a" * 43,
    ],
)
def test_join_with_a_malformed_link_is_a_one_line_error(tmp_path: Path, link: str) -> None:
    result = run_bot(["join", link, "--duration", "5"], clean_env(), tmp_path)
    assert result.returncode != 0
    line = one_line_error(result.stderr)
    assert "link" in line.lower() or "key" in line.lower()
    assert result.stdout == ""


def test_join_with_a_bad_duration_is_refused(tmp_path: Path) -> None:
    link = f"http://127.0.0.1:9/j/room#iabcdefghijk.{secrets.token_urlsafe(32)}"
    result = run_bot(["join", link, "--duration", "0"], clean_env(), tmp_path)
    assert result.returncode == 2
    assert "--duration" in one_line_error(result.stderr)


def test_join_when_nothing_listens_says_it_cannot_reach_the_server(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(32)
    with refusing_port() as port:
        link = f"http://127.0.0.1:{port}/j/SomeRoom#iabcdefghijk.{secret}"
        result = run_bot(["join", link, "--duration", "10"], clean_env(), tmp_path)
    assert result.returncode != 0
    line = one_line_error(result.stderr)
    assert "cannot reach" in line.lower()
    assert f"127.0.0.1:{port}" in line
    assert secret not in result.stderr + result.stdout


def test_join_dash_reads_the_link_from_standard_input(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(32)
    with refusing_port() as port:
        link = f"http://127.0.0.1:{port}/j/SomeRoom#iabcdefghijk.{secret}"
        result = run_bot(
            ["join", "-", "--duration", "10"], clean_env(), tmp_path, stdin_text=f"\n{link}\n"
        )
    assert result.returncode == 1
    # It got as far as dialling the link's server: the link was read whole from stdin.
    assert f"127.0.0.1:{port}" in one_line_error(result.stderr)
    assert secret not in result.stderr + result.stdout


def test_join_dash_with_nothing_on_standard_input_says_so(tmp_path: Path) -> None:
    result = run_bot(["join", "-"], clean_env(), tmp_path, stdin_text="")
    assert result.returncode == 2
    assert "no invite link on standard input" in one_line_error(result.stderr)


# --- run --------------------------------------------------------------------------------------


def test_run_on_a_port_already_taken_fails_clearly(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        env = conclave_env(port, tmp_path / "c.db")
        result = run_bot(["run"], env, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr
    # The clear message is the last thing said, not buried in a log line.
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("conclave: ") and str(port) in last
    assert "DM to" not in result.stdout  # the console never started


def test_run_with_an_invalid_config_exits_2(tmp_path: Path) -> None:
    env = conclave_env(0, tmp_path / "c.db", CONCLAVE_LOGGING_LEVEL="loud")
    result = run_bot(["run"], env, tmp_path)
    assert result.returncode == 2
    assert "logging.level" in one_line_error(result.stderr)
    assert not (tmp_path / "c.db").exists()


# --- version and usage ------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    script = shutil.which("conclave") or str(Path(sys.executable).parent / "conclave")
    result = subprocess.run(
        [script, "--version"],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"conclave {bot.__version__}"
    assert bot.__version__ == version("conclave")


def test_module_version_matches(tmp_path: Path) -> None:
    result = run_bot(["--version"], clean_env(), tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"conclave {bot.__version__}"


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_bot([], clean_env(), tmp_path)
    assert result.returncode == 2
    assert "usage: conclave" in result.stderr
    assert "Traceback" not in result.stderr


def test_relay_without_a_secret_is_a_config_error(tmp_path: Path) -> None:
    result = run_bot(["relay", "--core-url", "http://127.0.0.1:9"], clean_env(), tmp_path)
    assert result.returncode == 2
    assert "relay.secret" in result.stderr
    assert "Traceback" not in result.stderr


def test_join_with_a_missing_media_file_says_so(tmp_path: Path) -> None:
    link = "http://127.0.0.1:9/j/room#i0123456789ab." + "A" * 43
    result = run_bot(["join", link, "--video", "nope.webm"], clean_env(), tmp_path)
    assert result.returncode == 2
    assert "nope.webm" in result.stderr and "no such file" in result.stderr


def test_a_relay_worker_process_freezes_what_start_up_made() -> None:
    """``conclave relay`` calls this before it serves: afterwards full collections skip the
    tens of thousands of objects imports made (run in a process of its own, as it would)."""
    code = (
        "import gc\n"
        "from bot.relay.worker import freeze_startup_heap\n"
        "before = gc.get_freeze_count()\n"
        "freeze_startup_heap()\n"
        "print(before, gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    before, frozen, tracked = map(int, result.stdout.split())
    assert before == 0 and frozen > 10_000
    assert tracked < frozen / 10, "what the collector still walks"
