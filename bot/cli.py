"""The ``conclave`` command: ``run``, ``join`` and ``check-config``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from bot import __version__
from bot.bootstrap import build
from bot.client.join import join
from bot.config import Settings, describe, load_settings
from bot.errors import ConclaveError, ConfigError
from bot.logs import configure

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
    j.add_argument("link", help="the whole invite link, including the part after '#'")
    j.add_argument("--duration", type=float, help="leave after this many seconds")
    return parser


async def _serve(settings: Settings) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "join":
            configure("warning")
            if args.duration is not None and args.duration <= 0:
                print("conclave: --duration must be a positive number of seconds", file=sys.stderr)
                return EXIT_CONFIG
            return asyncio.run(join(args.link, args.duration))
        settings = load_settings(args.config)
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
