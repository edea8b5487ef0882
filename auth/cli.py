"""`rtmpd users ...`, `rtmpd tokens ...` and `rtmpd push ...`: manage streamers, stream keys, API
tokens and push destinations from a shell, even while the server runs. All go through
`Accounts`, as the admin API does.

A destination URL carries another service's stream key: `push add` takes it (as an argument,
or from stdin with `-`, which keeps it out of the shell history and the process list) and
never prints it back; `push list` shows it redacted.

New keys and tokens are printed alone on stdout (shown once, never stored in clear); everything
meant for a human goes to stderr. Bad input is one line on stderr and exit status 1, with the
database unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from .accounts import Accounts
from .backend import open_store
from .destinations import redact
from .sqlstore import ApiToken, Destination, StoreError, User

PROG = "rtmpd users"
TOKENS_PROG = "rtmpd tokens"
PUSH_PROG = "rtmpd push"
GUESSED = (
    "(that address comes from [rtmp] listen or this machine's name; if streamers reach the "
    "server by another, set [web] public_rtmp_url in the config file)"
)


def _parser(prog: str, description: str, helps: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, text in helps.items():
        sub = commands.add_parser(command, help=text, description=text)
        if command != "list":
            sub.add_argument("name", metavar="NAME")
    return parser


USERS_HELP = {
    "add": "create a user and print their new stream key",
    "list": "list users",
    "ban": "set a user inactive (cuts a live publish)",
    "unban": "set a user active again",
    "remove": "delete a user (cuts a live publish)",
    "rotate-key": "print a new stream key; the old one stops working",
}
TOKENS_HELP = {
    "add": "create an API token for the admin API and dashboard, and print it",
    "list": "list API tokens",
    "remove": "delete an API token (requests and dashboard sessions with it stop working)",
}


PUSH_HELP = {
    "add": "add a push destination (URL, or - to read it from stdin) to a user's broadcasts",
    "list": "list a user's push destinations (their keys redacted)",
    "remove": "remove a user's push destination by its ID",
}


def _push_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PUSH_PROG, description="Manage push destinations (restreaming) of users."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, text in PUSH_HELP.items():
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("name", metavar="NAME")
        if command == "add":
            sub.add_argument("url", metavar="URL", help="rtmp(s)://host/app/KEY; -: read stdin")
        elif command == "remove":
            sub.add_argument("destination_id", metavar="ID", type=int)
    return parser


def format_destinations(items: list[Destination]) -> str:
    rows = [("ID", "URL", "ADDED")]
    rows += [(str(d.destination_id), redact(d.url), _when(d.created)) for d in items]
    return _table(rows)


async def _push(accounts: Accounts, args: argparse.Namespace) -> None:
    name: str = args.name
    if args.command == "add":
        url: str = args.url
        if url == "-":
            url = sys.stdin.readline().strip()
        made = await accounts.add_destination(name, url)
        print(f"added destination {made.destination_id} for {name}: {redact(made.url)}")
        _tell("it is used from the next broadcast on; the URL is not shown again")
    elif args.command == "list":
        print(format_destinations(await accounts.destinations(name)))
    elif args.command == "remove":
        await accounts.remove_destination(name, args.destination_id)
        print(f"removed destination {args.destination_id} of {name}")


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_table(users: list[User]) -> str:
    rows = [("NAME", "ACTIVE", "LIVE SINCE", "CREATED")]
    rows += [
        (u.name, "yes" if u.active else "no", _when(u.live_since), _when(u.created)) for u in users
    ]
    return _table(rows)


def format_tokens(tokens: list[ApiToken]) -> str:
    rows = [("NAME", "CREATED", "LAST USED")]
    rows += [(t.name, _when(t.created), _when(t.last_used)) for t in tokens]
    return _table(rows)


async def _users(accounts: Accounts, args: argparse.Namespace, hint: str, guessed: bool) -> None:
    name: str = getattr(args, "name", "")
    if args.command == "add":
        made = await accounts.add_user(name)
        print(made.key, flush=True)
        _tell(f"created {name}; publish to {hint.rstrip('/')}/<key>")
        if guessed:
            _tell(GUESSED)
        _tell("the key above is shown only once: keep it secret")
    elif args.command == "rotate-key":
        made = await accounts.rotate_key(name)
        print(made.key, flush=True)
        _tell(f"new key for {name}; the old key no longer works")
    elif args.command == "list":
        print(format_table(await accounts.users()))
    elif args.command == "ban":
        _, changed = await accounts.ban(name)
        print(f"banned {name}" if changed else f"{name} was already banned")
    elif args.command == "unban":
        _, changed = await accounts.unban(name)
        print(f"unbanned {name}" if changed else f"{name} was not banned")
    elif args.command == "remove":
        await accounts.remove(name)
        print(f"removed {name}")


async def _tokens(accounts: Accounts, args: argparse.Namespace) -> None:
    name: str = getattr(args, "name", "")
    if args.command == "add":
        print(await accounts.add_token(name), flush=True)
        _tell(f"created token {name}; send it as 'Authorization: Bearer <token>' to /api/admin/")
        _tell("the token above is shown only once: keep it secret")
    elif args.command == "list":
        print(format_tokens(await accounts.tokens()))
    elif args.command == "remove":
        await accounts.remove_token(name)
        print(f"removed token {name}")


def _main(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: list[str],
    db_path: Path,
    run: Callable[[Accounts, argparse.Namespace], Awaitable[None]],
    db_url: str = "",
) -> int:
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return exc.code if isinstance(exc.code, int) else 2

    async def session() -> None:
        async with open_store(Path(db_path), db_url) as store:
            await run(Accounts(store), args)

    try:
        asyncio.run(session())
    except StoreError as exc:
        _tell(f"{prog}: error: {exc}")
        return 1
    return 0


def _tell(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main_users(
    argv: list[str],
    db_path: Path,
    publish_url_hint: str,
    *,
    guessed: bool = False,
    db_url: str = "",
) -> int:
    """Run one `rtmpd users` command; the exit status. `publish_url_hint` is the base publish
    URL, e.g. "rtmp://example.com:1935/app" (the key is never put into it); `guessed` says it
    was derived from the listen address or the host name, and `add` then says how to set it."""
    parser = _parser(PROG, "Manage users and stream keys.", USERS_HELP)

    def run(accounts: Accounts, args: argparse.Namespace) -> Awaitable[None]:
        return _users(accounts, args, publish_url_hint, guessed)

    return _main(PROG, parser, argv, db_path, run, db_url)


def main_tokens(argv: list[str], db_path: Path, db_url: str = "") -> int:
    """Run one `rtmpd tokens` command; the exit status (`db_url`: PostgreSQL instead of the
    file)."""
    parser = _parser(TOKENS_PROG, "Manage API tokens for the admin API.", TOKENS_HELP)
    return _main(TOKENS_PROG, parser, argv, db_path, _tokens, db_url)


def main_push(argv: list[str], db_path: Path, db_url: str = "") -> int:
    """Run one `rtmpd push` command; the exit status."""
    return _main(PUSH_PROG, _push_parser(), argv, db_path, _push, db_url)
