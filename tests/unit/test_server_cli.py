"""`tasklight-server`: the migrate command is there, next to users."""

from __future__ import annotations

from shared import server_cli


def test_migrate_is_a_command_of_the_server_cli_and_needs_no_arguments() -> None:
    parser = server_cli.build_parser()
    args = parser.parse_args(["migrate"])
    assert args.command == "migrate"
    assert [sub.name for sub in server_cli.SUBCOMMANDS] == ["migrate", "users"]
