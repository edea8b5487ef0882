"""`rtmpd users ...`: manage users and stream keys from a shell, even while the server runs.

New keys are printed alone on stdout (shown once, never stored in clear); everything meant
for a human goes to stderr. Bad input is one line on stderr and exit status 1, with the
database unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from .store import Store, StoreError, User

PROG = "rtmpd users"
GUESSED = (
    "(that address comes from [rtmp] listen or this machine's name; if streamers reach the "
    "server by another, set [web] public_rtmp_url in the config file)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Manage users and stream keys.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "add": "create a user and print their new stream key",
        "list": "list users",
        "ban": "set a user inactive (cuts a live publish)",
        "unban": "set a user active again",
        "remove": "delete a user (cuts a live publish)",
        "rotate-key": "print a new stream key; the old one stops working",
    }
    for command, text in helps.items():
        sub = commands.add_parser(command, help=text, description=text)
        if command != "list":
            sub.add_argument("name", metavar="NAME")
    return parser


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def format_table(users: list[User]) -> str:
    rows = [("NAME", "ACTIVE", "LIVE SINCE", "CREATED")]
    rows += [
        (u.name, "yes" if u.active else "no", _when(u.live_since), _when(u.created)) for u in users
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def _run(
    args: argparse.Namespace, db_path: Path, publish_url_hint: str, guessed: bool
) -> int:
    async with Store(db_path) as store:
        name: str = getattr(args, "name", "")
        if args.command == "add":
            key = await store.add_user(name)
            print(key, flush=True)
            _tell(f"created {name}; publish to {_publish_url(publish_url_hint)}")
            if guessed:
                _tell(GUESSED)
            _tell("the key above is shown only once: keep it secret")
        elif args.command == "rotate-key":
            key = await store.rotate_key(name)
            print(key, flush=True)
            _tell(f"new key for {name}; the old key no longer works")
        elif args.command == "list":
            users = await store.list_users()
            print(format_table(users))
        elif args.command == "ban":
            changed = await store.ban(name)
            print(f"banned {name}" if changed else f"{name} was already banned")
        elif args.command == "unban":
            changed = await store.unban(name)
            print(f"unbanned {name}" if changed else f"{name} was not banned")
        elif args.command == "remove":
            await store.remove(name)
            print(f"removed {name}")
    return 0


def _publish_url(hint: str) -> str:
    return f"{hint.rstrip('/')}/<key>" if hint else "rtmp://HOST:1935/app/<key>"


def _tell(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main_users(
    argv: list[str], db_path: Path, publish_url_hint: str, *, guessed: bool = False
) -> int:
    """Run one `rtmpd users` command; the exit status. `publish_url_hint` is the base publish
    URL, e.g. "rtmp://example.com:1935/app" (the key is never put into it); `guessed` says it
    was derived from the listen address or the host name, and `add` then says how to set it."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return asyncio.run(_run(args, Path(db_path), publish_url_hint, guessed))
    except StoreError as exc:
        _tell(f"{PROG}: error: {exc}")
        return 1
