"""`tasklight-server`: the server's administrative commands, run where the database is reachable.

They talk to MongoDB (`MONGODB_URL`, `TASKLIGHT_DATABASE`), not to the API. The client's CLI,
`tasklight` (the `tasklight-client` package), acts through the API instead; the two names differ
so that one virtualenv can hold both.

Exit status: 0 done; 2 bad usage, or a command that cannot be done (the message says why).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from shared import cli_users
from shared.migrate import migrate
from shared.settings import Settings
from shared.store import DatabaseUnreachable

EXIT_OK = 0
EXIT_REFUSED = 2


class CommandError(Exception):
    """A command that cannot be done; its message says why, in one line."""


@dataclass(frozen=True)
class Subcommand:
    """One top-level command: how it adds its parser, and what it does (returns what to print)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, str]]


async def _users(args: argparse.Namespace) -> str:
    try:
        return await cli_users.run(args)
    except cli_users.UsersError as exc:
        raise CommandError(str(exc)) from None


async def _migrate(args: argparse.Namespace) -> str:
    try:
        done = await migrate(Settings())
    except DatabaseUnreachable as exc:
        raise CommandError(f"the database does not answer: {exc}") from None
    return "\n".join(done) if done else "the database is up to date"


#: Every command, in the order `--help` lists them. A new one is one entry here and a module of
#: its own holding its arguments and its work.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand(
        "migrate",
        "create the indexes and bring older documents up to date (before the services start)",
        lambda parser: None,
        _migrate,
    ),
    Subcommand(
        "users", "manage users and API tokens (in the database)", cli_users.add_arguments, _users
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="tasklight-server",
        description="Administer a tasklight server: its database's schema, users and tokens.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for sub in SUBCOMMANDS:
        sub.add_arguments(commands.add_parser(sub.name, help=sub.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns (and, as a script, exits with) its status."""
    args = build_parser().parse_args(argv)
    command = next(sub for sub in SUBCOMMANDS if sub.name == args.command)
    try:
        output = asyncio.run(command.run(args))
    except CommandError as exc:
        print(f"tasklight-server: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130
    if output:
        print(output)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
