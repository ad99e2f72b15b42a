"""`tasklight-server users …`: manage users and API tokens, straight in the database.

These commands talk to MongoDB (`MONGODB_URL`, `TASKLIGHT_DATABASE`), not to the API: they are
how the first administrator and tokens come to exist, the way `createsuperuser` does elsewhere.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from shared.auth import AuthStore, NoSuchUser, Role, UserExists
from shared.settings import Settings
from shared.store import open_store


class UsersError(Exception):
    """A `users` command that cannot be done; the message says why."""


def add_arguments(users: argparse.ArgumentParser) -> None:
    """Add the `users` actions to its parser."""
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a user")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="an administrator (sees all tasks)")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a password for the web UI from stdin (a terminal asks for one otherwise)",
    )
    token = actions.add_parser("token", help="issue an API token (printed once)")
    token.add_argument("name")
    token.add_argument("--label", default="", help="what the token is for")
    revoke = actions.add_parser("revoke", help="revoke every API token of a user")
    revoke.add_argument("name")
    password = actions.add_parser("password", help="set a user's web UI password")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    actions.add_parser("list", help="list users, their roles and token counts")


def _read_password(from_stdin: bool, *, required: bool) -> str | None:
    if from_stdin:
        value = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        value = getpass.getpass("Password: ")
        if value and getpass.getpass("Again: ") != value:
            raise UsersError("the passwords differ")
    else:
        value = ""
    if not value and required:
        raise UsersError("no password given")
    return value or None


async def run(args: argparse.Namespace) -> str:
    """Do one `users` command; returns what to print."""
    settings = Settings()
    store = open_store(settings)
    auth = AuthStore(store.accounts)
    try:
        return await _do(auth, args)
    except UserExists as exc:
        raise UsersError(f"user {exc} exists already") from None
    except NoSuchUser as exc:
        raise UsersError(f"no user {exc}") from None
    except ValueError as exc:
        raise UsersError(str(exc)) from None
    finally:
        await store.close()


async def _do(auth: AuthStore, args: argparse.Namespace) -> str:
    command = args.users_command
    if command == "create":
        role = Role.ADMIN if args.admin else Role.USER
        password = _read_password(args.password_stdin, required=False)
        await auth.create_user(args.name, role, password=password)
        return f"created {role.value} {args.name}" + ("" if password else " (no password)")
    if command == "token":
        return await auth.issue_token(args.name, args.label)
    if command == "revoke":
        return f"revoked {await auth.revoke_tokens(args.name)} tokens of {args.name}"
    if command == "password":
        new = _read_password(args.password_stdin, required=True)
        assert new is not None
        await auth.set_password(args.name, new)
        return f"password of {args.name} set"
    rows = await auth.list_users()
    return "\n".join(f"{u.name:<24} {u.role:<6} {u.tokens} tokens" for u in rows)
