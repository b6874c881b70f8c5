"""Settings: embedded defaults, a TOML file over them, ``CONCLAVE_*`` variables over both.

Every invalid value is a ``ConfigError`` that names the key, so an operator knows what to fix.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from bot.bootstrap import local_worker_env
from bot.config import RelaySettings, Settings, describe, load_settings, section_env
from bot.errors import ConfigError
from bot.secret import Secret

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "conclave.example.toml"


def declared_keys() -> dict[str, list[str]]:
    """Every section and key that ``bot.config`` declares, read from its dataclasses."""
    hints = get_type_hints(Settings)
    keys: dict[str, list[str]] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "source":
            continue
        keys[f.name] = [k.name for k in dataclasses.fields(hints[f.name])]
    return keys


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conclave.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None = None, env: Mapping[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=env or {})
    return caught.value


# --- defaults and layering --------------------------------------------------------------------


def test_defaults_without_a_file() -> None:
    s = load_settings(environ={})
    assert s.source == "embedded defaults"
    assert (s.server.host, s.server.port, s.server.public_url) == ("127.0.0.1", 8080, "")
    assert s.server.base_url == "http://127.0.0.1:8080"
    assert s.storage.path == "./data/conclave.db"
    assert s.meetings.default_ttl == 24 * 3600
    assert s.meetings.max_ttl == 7 * 24 * 3600
    assert s.meetings.invite_ttl == 24 * 3600
    assert s.meetings.max_invitees == 25
    assert s.signaling.hello_timeout == 10
    assert s.logging.level == "info"
    assert s.console.user == "host"


def test_the_process_environment_is_ignored_when_environ_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("CONCLAVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CONCLAVE_SERVER_PORT", "9999")
    assert load_settings(environ={}).server.port == 8080
    assert load_settings().server.port == 9999


def test_a_toml_file_sets_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        host = "0.0.0.0"
        port = 9000
        public_url = "https://meet.example.com/"

        [storage]
        path = "/var/lib/conclave/c.db"

        [meetings]
        default_ttl = "2h"
        max_ttl = "1d"
        invite_ttl = 900
        max_invitees = 10

        [signaling]
        hello_timeout = "30s"

        [logging]
        level = "DEBUG"

        [console]
        user = "operator"
        """,
    )
    s = load_settings(path, environ={})
    assert s.source == str(path)
    assert (s.server.host, s.server.port) == ("0.0.0.0", 9000)
    assert s.server.public_url == "https://meet.example.com/"
    assert s.server.base_url == "https://meet.example.com"
    assert s.storage.path == "/var/lib/conclave/c.db"
    assert (s.meetings.default_ttl, s.meetings.max_ttl, s.meetings.invite_ttl) == (
        7200,
        86400,
        900,
    )
    assert s.meetings.max_invitees == 10
    assert s.meetings.policy().max_invitees == 10
    assert s.signaling.hello_timeout == 30
    assert s.console.user == "operator"


def test_a_partial_file_keeps_the_other_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "[server]\nport = 9001\n"), environ={})
    assert s.server.port == 9001
    assert s.server.host == "127.0.0.1"
    assert s.meetings.default_ttl == 24 * 3600


def test_environment_overrides_beat_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        host = "10.0.0.1"
        port = 9000
        public_url = "https://file.example.com"

        [storage]
        path = "from-file.db"
        """,
    )
    env = {
        "CONCLAVE_SERVER_HOST": "127.0.0.2",
        "CONCLAVE_SERVER_PORT": "9100",
        "CONCLAVE_SERVER_PUBLIC_URL": "https://env.example.com",
        "CONCLAVE_STORAGE_PATH": "from-env.db",
        "CONCLAVE_MEETINGS_DEFAULT_TTL": "90m",
    }
    s = load_settings(path, environ=env)
    assert s.server.host == "127.0.0.2"
    assert s.server.port == 9100
    assert s.server.public_url == "https://env.example.com"
    assert s.storage.path == "from-env.db"
    assert s.meetings.default_ttl == 90 * 60


def test_conclave_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9002\n")
    s = load_settings(environ={"CONCLAVE_CONFIG": str(path)})
    assert s.server.port == 9002
    assert s.source == str(path)


def test_base_url_of_wildcard_and_ipv6_hosts() -> None:
    assert load_settings(environ={"CONCLAVE_SERVER_HOST": "0.0.0.0"}).server.base_url == (
        "http://127.0.0.1:8080"
    )
    assert load_settings(environ={"CONCLAVE_SERVER_HOST": "::1"}).server.base_url == (
        "http://[::1]:8080"
    )


def test_port_zero_is_accepted_meaning_any_free_port(tmp_path: Path) -> None:
    assert load_settings(environ={"CONCLAVE_SERVER_PORT": "0"}).server.port == 0
    assert load_settings(write(tmp_path, "[server]\nport = 0\n"), environ={}).server.port == 0


# --- invalid values name their key ------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"CONCLAVE_SERVER_PORT": "abc"}, "server.port"),
        ({"CONCLAVE_SERVER_PORT": "65536"}, "server.port"),
        ({"CONCLAVE_SERVER_PORT": "-1"}, "server.port"),
        ({"CONCLAVE_SERVER_HOST": "  "}, "server.host"),
        ({"CONCLAVE_SERVER_PUBLIC_URL": "meet.example.com"}, "server.public_url"),
        ({"CONCLAVE_SERVER_PUBLIC_URL": "ftp://meet.example.com"}, "server.public_url"),
        ({"CONCLAVE_SERVER_PUBLIC_URL": "https://meet.example.com/?a=1"}, "server.public_url"),
        ({"CONCLAVE_SERVER_PUBLIC_URL": "https://meet.example.com/#x"}, "server.public_url"),
        ({"CONCLAVE_STORAGE_PATH": ""}, "storage.path"),
        ({"CONCLAVE_MEETINGS_DEFAULT_TTL": "soon"}, "meetings.default_ttl"),
        ({"CONCLAVE_MEETINGS_INVITE_TTL": "5x"}, "meetings.invite_ttl"),
        ({"CONCLAVE_MEETINGS_INVITE_TTL": "10s"}, "meetings.invite_ttl"),
        ({"CONCLAVE_MEETINGS_MAX_INVITEES": "0"}, "meetings.max_invitees"),
        ({"CONCLAVE_SIGNALING_HELLO_TIMEOUT": "0"}, "signaling.hello_timeout"),
        ({"CONCLAVE_LOGGING_LEVEL": "loud"}, "logging.level"),
        ({"CONCLAVE_MEETINGS_DEFAULT_TTL": "8d"}, "meetings.default_ttl"),
    ],
)
def test_an_invalid_environment_value_names_the_key(env: dict[str, str], key: str) -> None:
    err = config_error(env=env)
    assert err.key == key
    assert str(err).startswith(f"{key}: ")
    assert err.problem


def test_default_ttl_longer_than_max_ttl_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[meetings]\ndefault_ttl = "3d"\nmax_ttl = "2d"\n')
    err = config_error(path)
    assert err.key == "meetings.default_ttl"
    assert "meetings.max_ttl" in err.problem


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[server]\nport = "abc"\n', "server.port"),
        ("[server]\nport = true\n", "server.port"),
        ("[server]\nport = 80.5\n", "server.port"),
        ("[server]\nhost = 7\n", "server.host"),
        ('[meetings]\ndefault_ttl = "a while"\n', "meetings.default_ttl"),
        ("[meetings]\ndefault_ttl = true\n", "meetings.default_ttl"),
        ('[server]\npublic_url = "not a url"\n', "server.public_url"),
        ("[server]\nprot = 8080\n", "server.prot"),
        ("[sever]\nport = 8080\n", "sever"),
        ('server = "x"\n', "server"),
    ],
)
def test_an_invalid_file_value_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    err = config_error(write(tmp_path, text))
    assert err.key == key
    assert str(err).startswith(f"{key}: ")


def test_an_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "[server]\nprot = 8080\n"))
    assert "unknown key" in err.problem
    for known in ("host", "port", "public_url"):
        assert known in err.problem


def test_an_unknown_section_is_refused(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "[teams]\ntoken = 'x'\n"))
    assert err.key == "teams"
    assert "unknown section" in err.problem


def test_an_unknown_conclave_variable_is_refused() -> None:
    err = config_error(env={"CONCLAVE_SERVER_PROT": "8080"})
    assert err.key == "CONCLAVE_SERVER_PROT"
    # Variables outside the prefix are none of Conclave's business.
    assert load_settings(environ={"HOME": "/root", "CONCLAVEX": "1"}).server.port == 8080


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = 8080\n")
    err = config_error(path)
    assert err.key == str(path)
    assert "TOML" in err.problem


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    err = config_error(path)
    assert err.key == str(path)
    assert "not found" in err.problem


# --- the example file and the printed settings ------------------------------------------------


def _section_blocks(text: str) -> dict[str, str]:
    """The text under each ``[section]`` header (headers may be commented out)."""
    blocks: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        header = re.match(r"^\s*#?\s*\[([A-Za-z_]+)\]\s*(#.*)?$", line)
        if header:
            current = header.group(1)
            blocks.setdefault(current, "")
        elif current is not None:
            blocks[current] += line + "\n"
    return blocks


def test_the_example_config_documents_every_key() -> None:
    assert EXAMPLE.is_file(), f"{EXAMPLE.relative_to(REPO)} is missing"
    # It is a valid config in its own right...
    load_settings(EXAMPLE, environ={})
    # ...and every declared key appears under its section (set, or commented with its default).
    blocks = _section_blocks(EXAMPLE.read_text(encoding="utf-8"))
    missing: list[str] = []
    for section, keys in declared_keys().items():
        block = blocks.get(section)
        if block is None:
            missing.append(f"[{section}]")
            continue
        missing += [
            f"{section}.{key}"
            for key in keys
            if not re.search(rf"^\s*#?\s*{re.escape(key)}\s*=", block, re.MULTILINE)
        ]
    assert not missing, f"the example config does not document: {', '.join(missing)}"


def test_describe_round_trips_as_a_config_file(tmp_path: Path) -> None:
    """What ``check-config`` prints is itself a valid config giving the same settings."""
    env = {
        "CONCLAVE_SERVER_PORT": "9300",
        "CONCLAVE_SERVER_PUBLIC_URL": "https://meet.example.com",
        "CONCLAVE_MEETINGS_DEFAULT_TTL": "1h30m",
    }
    original = load_settings(environ=env)
    again = load_settings(write(tmp_path, describe(original)), environ={})
    fields: dict[str, Any] = {s: getattr(original, s) for s in declared_keys()}
    assert {s: getattr(again, s) for s in declared_keys()} == fields


def test_platform_and_relay_settings_are_checked() -> None:
    err = config_error(env={"CONCLAVE_SLACK_BOT_TOKEN": "xoxb-1"})
    assert err.key == "slack.app_token"
    err = config_error(env={"CONCLAVE_SLACK_BOT_TOKEN": "xoxb-1", "CONCLAVE_SLACK_MODE": "http"})
    assert err.key == "slack.signing_secret"
    err = config_error(env={"CONCLAVE_SLACK_MODE": "webhook"})
    assert err.key == "slack.mode"
    err = config_error(env={"CONCLAVE_DISCORD_GUILD_ID": "abc"})
    assert err.key == "discord.guild_id"
    err = config_error(env={"CONCLAVE_RELAY_ICE_SERVERS": "http://stun.example"})
    assert err.key == "relay.ice_servers"
    err = config_error(env={"CONCLAVE_RELAY_HOST_ADDRESSES": "localhost"})
    assert err.key == "relay.host_addresses"
    s = load_settings(
        environ={
            "CONCLAVE_RELAY_ICE_SERVERS": "stun:a.example:3478, turn:b.example:3478",
            "CONCLAVE_SLACK_BOT_TOKEN": "xoxb-secret-value",
            "CONCLAVE_SLACK_APP_TOKEN": "xapp-secret-value",
        }
    )
    assert s.relay.ice_servers == ("stun:a.example:3478", "turn:b.example:3478")
    assert s.slack.enabled and not s.discord.enabled
    shown = describe(s)
    assert "secret-value" not in shown and "**********" in shown


# --- settings a local relay worker gets -------------------------------------------------------

# A value other than the default for every relay key, so that a key which did not reach the
# worker would show as the default coming back.
RELAY_ENV = {
    "CONCLAVE_RELAY_WORKERS": "3",
    "CONCLAVE_RELAY_SECRET": "configured-relay-secret",
    "CONCLAVE_RELAY_ICE_SERVERS": "stun:a.example:3478,turns:b.example:5349",
    "CONCLAVE_RELAY_ICE_USERNAME": "ice-user",
    "CONCLAVE_RELAY_ICE_CREDENTIAL": "ice-credential-value",
    "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1,::1",
    "CONCLAVE_RELAY_PUBLIC_ADDRESS": "203.0.113.7",
    "CONCLAVE_RELAY_UDP_PORT_RANGE": "40000-40100",
    "CONCLAVE_RELAY_TURN_SECRET": "configured-turn-secret-value",
    "CONCLAVE_RELAY_TURN_TTL": "2h",
    "CONCLAVE_RELAY_MAX_PACKET_RATE": "1500",
    "CONCLAVE_LOGGING_LEVEL": "debug",
}


def test_every_relay_setting_reaches_a_local_worker() -> None:
    settings = load_settings(environ=RELAY_ENV)
    defaults = RelaySettings()
    not_set = [
        f.name
        for f in dataclasses.fields(RelaySettings)
        if getattr(settings.relay, f.name) == getattr(defaults, f.name)
    ]
    assert not not_set, f"give these relay keys a value other than the default: {not_set}"
    run_secret = Secret("this-run-relay-secret")
    env = local_worker_env(settings, run_secret)
    assert {var for var in env if var.startswith("CONCLAVE_RELAY_")} == {
        f"CONCLAVE_RELAY_{f.name.upper()}" for f in dataclasses.fields(RelaySettings)
    }
    # The worker loads its settings from that environment alone (it reads no config file).
    worker = load_settings(environ=env)
    assert worker.relay == dataclasses.replace(settings.relay, secret=run_secret)
    assert worker.logging == settings.logging


def test_every_section_loads_back_from_its_environment(tmp_path: Path) -> None:
    """``section_env`` writes each kind of value (durations, lists, secrets) as it is read."""
    path = write(
        tmp_path,
        """
        [server]
        public_url = "https://meet.example.com"
        idle_timeout = "2m"

        [meetings]
        default_ttl = "1h30m"

        [slack]
        bot_token = "xoxb-secret-value"
        app_token = "xapp-secret-value"
        """,
    )
    original = load_settings(path, environ=RELAY_ENV)
    env: dict[str, str] = {}
    for section in declared_keys():
        env.update(section_env(getattr(original, section)))
    again = load_settings(environ=env)
    assert {s: getattr(again, s) for s in declared_keys()} == {
        s: getattr(original, s) for s in declared_keys()
    }
