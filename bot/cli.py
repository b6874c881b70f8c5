"""The ``conclave`` command: ``run``, ``join`` and ``check-config``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from bot import __version__
from bot.config import Settings, describe, load_settings
from bot.errors import ConclaveError, ConfigError
from bot.logs import configure

# `run` serves signaling and the web app only; the media stack (aiortc, PyAV, numpy) and the
# client are imported inside the commands that use them, so the server starts without them
# and a missing media package cannot stop the bot.

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conclave", description="End-to-end-encrypted meetings from chat."
    )
    parser.add_argument("--version", action="version", version=f"conclave {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bot, web server and adapters")
    run.add_argument("--config", help="TOML config file (default: embedded defaults)")
    check = sub.add_parser("check-config", help="validate the config and print it, redacted")
    check.add_argument("--config", help="TOML config file (default: embedded defaults)")
    j = sub.add_parser("join", help="join a meeting with an invite link")
    j.add_argument(
        "link",
        help="the whole invite link, including the part after '#', or - to read it from "
        "standard input (keeps the invite key out of the process list)",
    )
    j.add_argument("--duration", type=float, help="leave after this many seconds")
    j.add_argument(
        "--video", default="testsrc", help="testsrc (default), a media file to loop, or none"
    )
    j.add_argument("--audio", default="tone", help="tone (default), a media file, or none")
    j.add_argument(
        "--record",
        metavar="DIR",
        help="write what each other participant sends, one file per track: "
        "DIR/<name>-<participant>.video.webm and .audio.wav",
    )
    j.add_argument(
        "--name",
        help="label this client's output lines (the roster always shows the invited name)",
    )
    j.add_argument("--no-media", action="store_true", help="signaling only: no audio or video")
    j.add_argument(
        "--relay-only",
        action="store_true",
        help="send and receive media only through the server's TURN servers (ICE transport "
        'policy "relay"), as a client behind a strict firewall must',
    )
    r = sub.add_parser("relay", help="run a media relay worker for a Conclave core")
    r.add_argument(
        "--core-url", required=True, help="the core's URL, e.g. https://meet.example.com"
    )
    r.add_argument("--worker-id", default=None, help="a name for this worker (default: host name)")
    r.add_argument("--config", help="TOML config file (for the [relay] section)")
    return parser


async def _serve(settings: Settings) -> None:
    from bot.bootstrap import build

    app = build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()


def _read_link(argument: str) -> str | None:
    """The link itself, or from standard input for ``-``; None if stdin held no link."""
    if argument != "-":
        return argument
    for line in sys.stdin:
        if line.strip():
            return line.strip()
    return None


def _join(args: argparse.Namespace) -> int:
    from bot.client.join import join
    from bot.client.session import MediaOptions
    from bot.rtc.internals import restrict_host_addresses

    configure("warning")
    link = _read_link(args.link)
    if link is None:
        print("conclave: no invite link on standard input", file=sys.stderr)
        return EXIT_CONFIG
    # A frame that cannot be decoded (its key frame was lost while keys changed) is expected
    # now and then; the receiver asks for a new key frame by itself.
    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    if args.duration is not None and args.duration <= 0:
        print("conclave: --duration must be a positive number of seconds", file=sys.stderr)
        return EXIT_CONFIG
    for option, value, keyword in (
        ("--video", args.video, "testsrc"),
        ("--audio", args.audio, "tone"),
    ):
        if value not in (keyword, "none") and not Path(value).is_file():
            print(f"conclave: {option} {value!r}: no such file", file=sys.stderr)
            return EXIT_CONFIG
    # The server's welcome names its ICE servers; this machine's settings may add some, and
    # say which host addresses to offer.
    relay = load_settings().relay
    restrict_host_addresses(relay.host_addresses)
    media = MediaOptions(
        enabled=not args.no_media,
        video=args.video,
        audio=args.audio,
        record_dir=Path(args.record) if args.record else None,
        ice=relay,
        relay_only=args.relay_only,
    )
    return asyncio.run(join(link, args.duration, media, args.name))


def _relay(args: argparse.Namespace, settings: Settings) -> int:
    from bot.relay.worker import freeze_startup_heap, run_worker

    relay = settings.relay
    if not relay.secret:
        raise ConfigError(
            "relay.secret", "is required to run a relay worker (CONCLAVE_RELAY_SECRET)"
        )
    worker_id = args.worker_id or socket.gethostname()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(args.core_url, worker_id, relay, stop=stop)

    freeze_startup_heap()
    asyncio.run(serve())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "join":
            return _join(args)
        settings = load_settings(args.config)
        if args.command == "relay":
            configure(settings.logging.level)
            return _relay(args, settings)
        if args.command == "check-config":
            print(describe(settings))
            print("\nconfiguration OK")
            return 0
        configure(settings.logging.level)
        asyncio.run(_serve(settings))
        return 0
    except ConfigError as err:
        print(f"conclave: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except ConclaveError as err:
        print(f"conclave: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
