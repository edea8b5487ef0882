"""The `rtmpd` command: `serve` (the default) runs the server, `users` manages accounts,
`tokens` the API tokens of the admin API.

Errors a user can fix (a bad config, a port in use) end in one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from rtmpd import config as configuration

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

DESCRIPTION = """\
rtmpd: a live-streaming ingest server in one process. Streamers publish RTMP to
rtmp://HOST:1935/app/<secret stream key>; viewers watch HLS under the streamer's public
name at http://HOST:8080/<name> (player) or /live/<name>/index.m3u8 (playlist).

commands:
  serve        run the RTMP and HTTP servers (the default)
  users        manage streamers and their stream keys (rtmpd users --help)
  tokens       manage API tokens for /api/admin/ and /admin (rtmpd tokens --help)
"""

SERVE_HELP = """\
Listen for RTMP publishers and HTTP viewers until SIGINT or SIGTERM. The configuration
comes from -c FILE, else ./rtmpd.toml when present, else built-in defaults (see
config.example.toml, which documents every key).
"""


def _config_option(parser: argparse.ArgumentParser, *, top: bool) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration file (TOML); default ./rtmpd.toml when present",
        default=None if top else argparse.SUPPRESS,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtmpd", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _config_option(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the servers (default)",
        description=SERVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(serve, top=False)
    for name, text in (("users", "manage streamers and stream keys"),
                       ("tokens", "manage API tokens of the admin API")):  # fmt: skip
        sub = commands.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        sub.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _split_config(argv: list[str]) -> tuple[Path | None, list[str]]:
    """Take `-c FILE` out of a `users` command line wherever it stands."""
    rest: list[str] = []
    path: Path | None = None
    it = iter(argv)
    for arg in it:
        if arg in ("-c", "--config"):
            value = next(it, None)
            if value is None:
                raise SystemExit("rtmpd: error: -c/--config needs a FILE")
            path = Path(value)
        elif arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return path, rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    config_path: Path | None = args.config
    users_args: list[str] = []
    if args.command in ("users", "tokens"):
        inner_path, users_args = _split_config(args.args)
        config_path = inner_path or config_path
    try:
        config = configuration.load(config_path)
    except configuration.ConfigError as exc:
        print(f"rtmpd: config error: {exc}", file=sys.stderr)
        return 2
    if args.command in ("users", "tokens"):
        from rtmpd.auth.cli import main_tokens, main_users

        try:
            config.database_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(
                f"rtmpd: cannot create {config.database_path.parent}: {exc.strerror}",
                file=sys.stderr,
            )
            return 1
        if args.command == "tokens":
            return main_tokens(users_args, config.database_path)
        status: int = main_users(
            users_args,
            config.database_path,
            config.publish_url_hint(),
            guessed=config.publish_url_guessed,
        )
        return status
    return serve(config)


def serve(config: configuration.Config) -> int:
    logging.basicConfig(level=config.log.level.upper(), format=LOG_FORMAT)
    try:
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:
        return 0


async def _serve(config: configuration.Config) -> int:
    from rtmpd.app import Rtmpd, StartupError

    server = Rtmpd(config)
    try:
        await server.start()
    except StartupError as exc:
        await server.stop()
        print(f"rtmpd: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("rtmpd").info("shutting down")
    await server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
