"""The `rtmpd` command: `serve` (the default) runs the server, `users` manages accounts,
`tokens` the API tokens of the admin API, `drain` asks a running server to drain,
`recordings` lists and removes recorded broadcasts.

Signals of `serve`: SIGINT stops at once; SIGTERM stops listening, drains ([rtmp]
drain_grace) and stops (a second SIGTERM stops at once); SIGUSR1 drains and goes on; SIGHUP
reloads the RTMPS certificate. `serve` writes its process id to rtmpd.pid next to the database,
where `rtmpd drain` finds it and sends SIGUSR1: a signal, not an admin socket, so there is no
new port to guard, the operating system decides who may ask (the same user or root), and
systemd can do the same (`systemctl kill -s USR1`, `ExecReload=` with SIGHUP).

Errors a user can fix (a bad config, a port in use) end in one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtmpd import config as configuration

if TYPE_CHECKING:
    from rtmpd.worker import Worker

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Commands run against the database by auth's command line (rtmpd.auth.cli).
ACCOUNT_COMMANDS = ("users", "tokens", "push")

DESCRIPTION = """\
rtmpd: a live-streaming ingest server in one process. Streamers publish RTMP to
rtmp://HOST:1935/app/<secret stream key>; viewers watch HLS under the streamer's public
name at http://HOST:8080/<name> (player) or /live/<name>/index.m3u8 (playlist).

commands:
  serve        run the RTMP and HTTP servers (the default)
  users        manage streamers and their stream keys (rtmpd users --help)
  tokens       manage API tokens for /api/admin/ and /admin (rtmpd tokens --help)
  push         manage push destinations of streamers (rtmpd push --help)
  drain        ask the running server to move its publishers off (rtmpd drain --help)
  recordings   list and remove recorded broadcasts (rtmpd recordings --help)
"""

SERVE_HELP = """\
Listen for RTMP publishers and HTTP viewers until SIGINT or SIGTERM. The configuration
comes from -c FILE, else ./rtmpd.toml when present, else built-in defaults (see
config.example.toml, which documents every key). SIGTERM drains first ([rtmp] drain_grace),
SIGUSR1 drains and goes on, SIGHUP reloads the [rtmps] certificate.
"""

DRAIN_HELP = """\
Tell the server running with this configuration (its process id is in rtmpd.pid next to
the database) to drain: publishers that support enhanced RTMP's reconnect request are asked
to reconnect (to [rtmp] drain_redirect when set) and take over their stream, with a
discontinuity in the playlist; the others, and whoever has not gone after [rtmp]
drain_grace seconds, are disconnected. The server keeps running and accepting publishers.
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
    drain = commands.add_parser(
        "drain",
        help="ask the running server to drain its publishers",
        description=DRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(drain, top=False)
    for name, text in (("users", "manage streamers and stream keys"),
                       ("tokens", "manage API tokens of the admin API"),
                       ("push", "manage push destinations (restreaming)"),
                       ("recordings", "list and remove recorded broadcasts")):  # fmt: skip
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
    if len(argv) == 2 and argv[0] == "--worker":  # started by the supervisor (rtmpd.supervisor)
        return worker_main(int(argv[1]))
    args = build_parser().parse_args(argv)
    config_path: Path | None = args.config
    users_args: list[str] = []
    if args.command in (*ACCOUNT_COMMANDS, "recordings"):
        inner_path, users_args = _split_config(args.args)
        config_path = inner_path or config_path
    try:
        config = configuration.load(config_path)
    except configuration.ConfigError as exc:
        print(f"rtmpd: config error: {exc}", file=sys.stderr)
        return 2
    if args.command in ACCOUNT_COMMANDS:
        from rtmpd.auth.cli import main_push, main_tokens, main_users

        try:
            config.database_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(
                f"rtmpd: cannot create {config.database_path.parent}: {exc.strerror}",
                file=sys.stderr,
            )
            return 1
        url = config.database.url
        if args.command == "tokens":
            return main_tokens(users_args, config.database_path, url)
        if args.command == "push":
            return main_push(users_args, config.database_path, url)
        status: int = main_users(
            users_args,
            config.database_path,
            config.publish_url_hint(),
            guessed=config.publish_url_guessed,
            db_url=url,
        )
        return status
    if args.command == "recordings":
        from rtmpd.hls.record_cli import main_recordings

        return main_recordings(users_args, config.record)
    if args.command == "drain":
        return drain(config)
    return serve(config)


def drain(config: configuration.Config) -> int:
    """Send SIGUSR1 to the server whose process id is in the pid file."""
    path = config.pid_file
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        print(f"rtmpd: no running server found (no process id in {path})", file=sys.stderr)
        return 1
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        if cmdline.parent.exists() and b"rtmpd" not in cmdline.read_bytes():
            raise ProcessLookupError  # the id was reused by another program
        os.kill(pid, signal.SIGUSR1)
    except (ProcessLookupError, FileNotFoundError):
        print(f"rtmpd: no running server found (process {pid} from {path} is gone)",
              file=sys.stderr)  # fmt: skip
        return 1
    except PermissionError:
        print(f"rtmpd: not allowed to signal process {pid} (run as its user)", file=sys.stderr)
        return 1
    grace = config.rtmp.drain_grace
    print(f"asked rtmpd (process {pid}) to drain; publishers left after {grace:g} s are "
          "disconnected" if grace else f"asked rtmpd (process {pid}) to drain, but its "
          "[rtmp] drain_grace is 0 (off)")  # fmt: skip
    return 0


def serve(config: configuration.Config) -> int:
    logging.basicConfig(level=config.log.level.upper(), format=LOG_FORMAT)
    if config.server.worker_count > 1:
        from rtmpd.supervisor import supervise

        return supervise(config)
    try:
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:
        return 0


def worker_main(fd: int) -> int:
    """One worker of several: its config and sockets come from the supervisor on `fd`."""
    from rtmpd.worker import Worker

    worker, hello = Worker.connect(fd)
    # Every worker's metric values go to files all of them read (prometheus-client's
    # multiprocess mode, chosen from this variable; metrics are made after this).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = worker.metrics_dir
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    source = hello["source"]
    config = configuration.from_dict(
        hello["data"], Path(hello["base_dir"]), None if source is None else Path(source)
    )
    logging.basicConfig(
        level=config.log.level.upper(),
        format=LOG_FORMAT.replace("%(name)s", f"[w{worker.index}] %(name)s"),
    )
    try:
        status: int = asyncio.run(_serve(config, worker))
    except KeyboardInterrupt:
        return 0
    return status


async def _serve(config: configuration.Config, worker: Worker | None = None) -> int:
    from rtmpd.app import Rtmpd
    from rtmpd.startup import StartupError

    try:
        server = Rtmpd(config, worker=worker)
    except StartupError as exc:
        print(f"rtmpd: {exc}", file=sys.stderr)
        return 2
    try:
        await server.start()
    except StartupError as exc:
        await server.stop()
        print(f"rtmpd: {exc}", file=sys.stderr)
        return 2
    log = logging.getLogger("rtmpd")
    pid_file = _write_pid(config.pid_file, log) if worker is None else None
    stop = asyncio.Event()
    terms: list[bool] = []
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[object]] = set()

    def spawn(coro: Coroutine[Any, Any, object]) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_term() -> None:
        if terms or not config.rtmp.drain_grace:
            stop.set()  # a second SIGTERM, or draining off: stop now
            return
        terms.append(True)
        log.info("SIGTERM: draining for up to %g s, then stopping", config.rtmp.drain_grace)

        async def shutdown() -> None:
            try:
                await server.shutdown()
            finally:
                stop.set()

        spawn(shutdown())

    def on_usr1() -> None:
        log.info("SIGUSR1: draining")
        spawn(server.drain())

    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    try:
        await stop.wait()
        log.info("shutting down")
        await server.stop()
    finally:
        for task in tasks:
            task.cancel()
        if pid_file is not None:
            with contextlib.suppress(OSError):
                pid_file.unlink()
    return 0


def _write_pid(path: Path, log: logging.Logger) -> Path | None:
    try:
        path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        log.warning("cannot write %s (rtmpd drain needs it): %s", path, exc.strerror)
        return None
    return path


if __name__ == "__main__":
    raise SystemExit(main())
