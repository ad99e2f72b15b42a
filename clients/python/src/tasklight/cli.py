"""`tasklight`: submit, get, list, cancel, answer and wait for tasks from a shell or a script.

Exit status: 0 done; 1 the task failed or was canceled; 2 bad usage or input the API refused;
3 the API or notifier is unreachable; 4 no such task; 5 a wait timed out (the pending tasks are
named on stderr); 6 no API token, or one that is not accepted.

Every command acts through the API as the owner of the API token in `--token` (env
`TASKLIGHT_TOKEN`). Users and tokens are made on the server, with `tasklight-server users`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from tasklight import cli_webhooks
from tasklight.client import TasklightClient
from tasklight.errors import (
    ApiError,
    NotFound,
    TasklightError,
    Unauthorized,
    Unreachable,
    WaitTimeout,
)
from tasklight.types import Task

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_TIMEOUT = 5
EXIT_UNAUTHORIZED = 6

DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_WS_URL = "ws://127.0.0.1:8001/ws"


class UsageError(Exception):
    """Bad command-line input."""


def parse_arg(text: str) -> tuple[str, Any]:
    """`k=v` → (k, v), with v parsed as JSON when it parses, else kept as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--arg {text!r}: expected KEY=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option}: must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    parser = argparse.ArgumentParser(
        prog="tasklight",
        description="Submit and follow tasklight background tasks.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        parents=[common],
    )
    parser.add_argument(
        "--api-url",
        default=os.environ.get("TASKLIGHT_API_URL", DEFAULT_API_URL),
        help="REST API (env TASKLIGHT_API_URL; default %(default)s)",
    )
    parser.add_argument(
        "--ws-url",
        default=os.environ.get("TASKLIGHT_WS_URL", DEFAULT_WS_URL),
        help="notifier WebSocket (env TASKLIGHT_WS_URL; default %(default)s)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("TASKLIGHT_TOKEN"),
        help="API token (env TASKLIGHT_TOKEN); `tasklight-server users token NAME` issues one",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser("submit", parents=[common], help="submit a task")
    submit.add_argument("name", help="task type, e.g. test.count")
    submit.add_argument(
        "--arg", action="append", default=[], metavar="KEY=VALUE", help="an argument (JSON or text)"
    )
    submit.add_argument("--args-json", metavar="JSON", help="all arguments as one JSON object")
    submit.add_argument("--ui-json", metavar="JSON", help="waiting-page hints as a JSON object")
    submit.add_argument("--metadata-json", metavar="JSON", help="metadata as a JSON object")
    submit.add_argument(
        "--exclusive",
        action="append",
        default=[],
        metavar="RESOURCE",
        help="a resource it takes alone, e.g. vm:web-01 (repeatable)",
    )
    submit.add_argument(
        "--shared",
        action="append",
        default=[],
        metavar="RESOURCE",
        help="a resource it shares with other shared holders (repeatable)",
    )
    when = submit.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="TIME", help="start at this ISO 8601 time (with its zone)")
    when.add_argument("--in", dest="delay_s", type=float, metavar="SECONDS", help="start later")
    submit.add_argument(
        "--priority", type=int, choices=[0, 1], default=0, help="1: before normal tasks"
    )

    listing = commands.add_parser("list", parents=[common], help="list tasks, newest first")
    listing.add_argument("--group", choices=["pending", "failed", "finished"])
    listing.add_argument("--state", action="append", help="a state (repeatable)")
    listing.add_argument("--name", help="a task type")
    listing.add_argument("--limit", type=int, default=50, help="most tasks shown (%(default)s)")

    get = commands.add_parser("get", aliases=["show"], parents=[common], help="show one task")
    get.add_argument("id")
    cancel = commands.add_parser("cancel", parents=[common], help="cancel a task")
    cancel.add_argument("id")
    answer = commands.add_parser(
        "answer", parents=[common], help="answer the question a task waits on"
    )
    answer.add_argument("id")
    answer.add_argument("answer", help="a choice's value, or the form's answer as a JSON object")
    answer.add_argument("--question", help="the question's key: refused if no longer asked")

    wait = commands.add_parser(
        "wait", parents=[common], help="wait for a task, or (--all) until nothing is pending"
    )
    wait.add_argument("id", nargs="?")
    wait.add_argument("--all", action="store_true", help="wait until no task is pending")
    wait.add_argument("--timeout", type=float, default=600.0, help="seconds (%(default)s)")
    cli_webhooks.add_parser(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns (and, as a script, exits with) its status."""
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        return asyncio.run(_run(args))
    except UsageError as exc:
        print(f"tasklight: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    if args.command == "webhooks":
        try:
            print(await cli_webhooks.run(args))
        except cli_webhooks.WebhooksError as exc:
            _fail(args, "refused", str(exc))
            return exc.status
        return EXIT_OK
    async with TasklightClient(args.api_url, args.ws_url, token=args.token) as client:
        try:
            return await _command(client, args)
        except WaitTimeout as exc:
            _fail(args, "timeout", str(exc), pending=exc.pending)
            return EXIT_TIMEOUT
        except NotFound as exc:
            _fail(args, "not-found", str(exc))
            return EXIT_NOT_FOUND
        except Unauthorized as exc:
            hint = "" if args.token else " (no token: set TASKLIGHT_TOKEN or --token)"
            _fail(args, "unauthorized", f"{exc}{hint}")
            return EXIT_UNAUTHORIZED
        except ApiError as exc:
            _fail(args, "refused", f"{exc} (HTTP {exc.status})", problem=exc.problem)
            return EXIT_USAGE
        except Unreachable as exc:
            _fail(args, "unreachable", str(exc))
            return EXIT_UNREACHABLE
        except TasklightError as exc:
            _fail(args, "error", str(exc))
            return EXIT_UNREACHABLE


async def _command(client: TasklightClient, args: argparse.Namespace) -> int:
    if args.command == "submit":
        task_args = _json_object(args.args_json, "--args-json") if args.args_json else {}
        task_args.update(parse_arg(item) for item in args.arg)
        ui = _json_object(args.ui_json, "--ui-json") if args.ui_json else None
        meta = _json_object(args.metadata_json, "--metadata-json") if args.metadata_json else None
        task = await client.submit(
            args.name,
            task_args,
            ui=ui,
            metadata=meta,
            exclusive_resources=args.exclusive,
            shared_resources=args.shared,
            run_at=args.at,
            delay_s=args.delay_s,
            priority=args.priority,
        )
        where = task["state"] if task.get("phase") in (None, "queued") else task["phase"]
        _print(args, task, f"submitted {task['id']} ({task['name']}, {where})")
        return EXIT_OK
    if args.command == "list":
        tasks = await client.list(
            group=args.group, state=args.state, name=args.name, limit=args.limit
        )
        if args.json:
            print(json.dumps(tasks, indent=2))
        elif not tasks:
            print(_nothing_listed(args))
        else:
            for task in tasks:
                print(_line(task))
        return EXIT_OK
    if args.command in ("get", "show"):
        task = await client.get(args.id)
        _print(args, task, _detail(task))
        return EXIT_OK
    if args.command == "cancel":
        task = await client.cancel(args.id)
        _print(args, task, f"{task['id']} {task['state']}")
        return EXIT_OK
    if args.command == "answer":
        _, value = parse_arg(f"answer={args.answer}")
        task = await client.answer(args.id, value, question=args.question)
        _print(args, task, f"{task['id']} answered; it goes on ({task['phase']})")
        return EXIT_OK
    return await _wait(client, args)


async def _wait(client: TasklightClient, args: argparse.Namespace) -> int:
    if args.all == (args.id is not None):
        raise UsageError("wait: give a task ID, or --all")
    if args.all:
        await client.wait_all(args.timeout)
        _print(args, {"pending": []}, "no task is pending")
        return EXIT_OK
    task = await client.wait(args.id, args.timeout)
    if task["state"] == "completed":
        _print(args, task, f"{task['id']} completed: {json.dumps(task['result'])}")
        return EXIT_OK
    error = task.get("error")
    reason = (error["message"] if error else "") or task["state"]
    if args.json:
        print(json.dumps(task, indent=2))
    print(f"tasklight: {task['id']} {task['state']}: {reason}", file=sys.stderr)
    return EXIT_TASK_FAILED


def _print(args: argparse.Namespace, data: object, human: str) -> None:
    print(json.dumps(data, indent=2) if args.json else human)


def _fail(args: argparse.Namespace, kind: str, message: str, **extra: Any) -> None:
    if args.json:
        print(json.dumps({"error": kind, "message": message, **extra}, indent=2))
    print(f"tasklight: {message}", file=sys.stderr)


def _nothing_listed(args: argparse.Namespace) -> str:
    """What `list` says when nothing matches, naming the filters that were given."""
    kinds = f"{args.group} tasks" if args.group else "tasks"
    filters = [f"state {' or '.join(args.state)}" if args.state else "", args.name or ""]
    named = " and ".join(f for f in filters if f)
    return f"no {kinds}" + (f" of {named}" if named else "")


def _line(task: Task) -> str:
    progress = ""
    if task.get("progress_reports"):
        report = task["progress_reports"][-1]
        progress = f"  {report['message']} {report['done']}/{report.get('total') or '?'}"
    return f"{task['id']}  {task['state']:<9}  {task['name']}{progress}"


def _detail(task: Task) -> str:
    lines = [_line(task)]
    for key in ("created_at", "started_at", "finished_at", "args", "result", "error", "worker"):
        value = task.get(key)
        if value not in (None, {}, []):
            lines.append(f"  {key}: {value if isinstance(value, str) else json.dumps(value)}")
    for attempt in task.get("attempts") or []:
        failure = attempt.get("error")
        why = failure["message"] if failure else ""
        lines.append(
            f"  attempt: {attempt.get('outcome')} on {attempt.get('worker') or '?'}"
            + (f": {why}" if why else "")
        )
    for report in task.get("progress_reports") or []:
        lines.append(
            f"  progress: {report['message']} {report['done']}/{report.get('total') or '?'}"
            f" ({report['state']})"
        )
    question = task.get("question")
    if question:
        options = [c["value"] for c in question.get("choices") or []] or ["a JSON object"]
        lines.append(
            f"  waits for an answer to {question['key']}: {question['title']}"
            f" ({' | '.join(options)}; by {question['deadline']})"
        )
    if task.get("parent_task"):
        lines.append(f"  parent: {task['parent_task']}")
    for child in task.get("child_tasks") or []:
        lines.append(f"  child: {child}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
