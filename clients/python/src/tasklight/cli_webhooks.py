"""`tasklight webhooks …`: a user's webhook endpoints, through the API as the token's owner.

    tasklight webhooks add URL [--event task.completed ...] [--task-type reports.*]
    tasklight webhooks list | show ID | deliveries ID [--limit N]
    tasklight webhooks rotate ID | disable ID | enable ID | remove ID | replay ID DELIVERY

`add` and `rotate` print the signing secret: the only time it is shown.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

API_PREFIX = "/api/v1"
#: The events an endpoint may take (the server's `shared.webhooks.events.EventType`; a server
#: test holds the two equal).
EVENT_TYPES = ("task.started", "task.progress", "task.completed", "task.failed", "task.canceled")

#: Exit statuses, as the rest of the CLI has them.
EXIT_OK = 0
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_UNAUTHORIZED = 6


class WebhooksError(Exception):
    """A webhooks command that failed; `status` is the exit status it ends with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `webhooks` and its subcommands to the CLI's subparsers."""
    webhooks = commands.add_parser(
        "webhooks", parents=[common], help="manage your webhook endpoints (through the API)"
    )
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", parents=[common], help="register an endpoint; prints its secret, once"
    )
    add.add_argument("url")
    add.add_argument(
        "--event",
        action="append",
        choices=EVENT_TYPES,
        help="an event it takes (repeatable; default: completed, failed, canceled)",
    )
    add.add_argument(
        "--task-type", action="append", default=[], help="a task type, or `prefix.*` (repeatable)"
    )
    add.add_argument("--description", default="")
    actions.add_parser("list", parents=[common], help="list your endpoints")
    for name, text in [
        ("show", "show one endpoint (and why it is disabled, if it is)"),
        ("rotate", "rotate its secret; prints the new one, once"),
        ("disable", "stop its deliveries (they wait)"),
        ("enable", "enable it again; what waited is sent"),
        ("remove", "remove it and its deliveries"),
    ]:
        actions.add_parser(name, parents=[common], help=text).add_argument("id")
    deliveries = actions.add_parser(
        "deliveries", parents=[common], help="its deliveries with every attempt, newest first"
    )
    deliveries.add_argument("id")
    deliveries.add_argument("--limit", type=int, default=20, help="most shown (%(default)s)")
    replay = actions.add_parser("replay", parents=[common], help="send a delivery again")
    replay.add_argument("id")
    replay.add_argument("delivery")


async def run(args: argparse.Namespace) -> str:
    """Do the `webhooks` command of `args`; what to print. Raises `WebhooksError`."""
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with httpx.AsyncClient(base_url=args.api_url, headers=headers, timeout=30) as http:
        return await _command(http, args)


async def _command(http: httpx.AsyncClient, args: argparse.Namespace) -> str:
    base = f"{API_PREFIX}/webhooks"
    action = args.webhooks_command
    as_json = getattr(args, "json", False)
    if action == "add":
        body: dict[str, Any] = {
            "url": args.url,
            "task_types": args.task_type,
            "description": args.description,
        }
        if args.event:
            body["events"] = args.event
        created = await _call(http, "POST", base, json=body)
        if as_json:
            return json.dumps(created, indent=2)
        return f"{created['id']}  {created['url']}\nsecret (shown this once): {created['secret']}"
    if action == "list":
        listed = (await _call(http, "GET", base))["results"]
        if as_json:
            return json.dumps(listed, indent=2)
        return "\n".join(_line(e) for e in listed) or "no webhook endpoints"
    if action == "show":
        shown = await _call(http, "GET", f"{base}/{args.id}")
        return json.dumps(shown, indent=2) if as_json else _detail(shown)
    if action == "rotate":
        rotated = await _call(http, "POST", f"{base}/{args.id}/rotate-secret")
        if as_json:
            return json.dumps(rotated, indent=2)
        until = rotated.get("previous_secret_expires_at")
        overlap = f"\nthe previous secret signs too until {until}" if until else ""
        return f"secret (shown this once): {rotated['secret']}{overlap}"
    if action in ("disable", "enable"):
        changed = await _call(
            http, "PATCH", f"{base}/{args.id}", json={"enabled": action == "enable"}
        )
        return json.dumps(changed, indent=2) if as_json else _line(changed)
    if action == "remove":
        await _call(http, "DELETE", f"{base}/{args.id}")
        return json.dumps({"removed": args.id}) if as_json else f"removed {args.id}"
    if action == "deliveries":
        page = await _call(
            http, "GET", f"{base}/{args.id}/deliveries", params={"limit": args.limit}
        )
        if as_json:
            return json.dumps(page["results"], indent=2)
        return "\n".join(_delivery(d) for d in page["results"]) or "no deliveries yet"
    replayed = await _call(http, "POST", f"{base}/{args.id}/deliveries/{args.delivery}/replay")
    return json.dumps(replayed, indent=2) if as_json else f"replaying {replayed['id']}"


async def _call(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        message = f"the API at {http.base_url} is unreachable: {exc}"
        raise WebhooksError(message, EXIT_UNREACHABLE) from None
    if response.status_code == 204:
        return None
    try:
        data = response.json()
    except ValueError:
        data = {"detail": response.text}
    if response.is_success:
        return data
    detail = data.get("detail") or data.get("title") or f"HTTP {response.status_code}"
    status = {401: EXIT_UNAUTHORIZED, 404: EXIT_NOT_FOUND}.get(response.status_code, EXIT_REFUSED)
    raise WebhooksError(f"{detail} (HTTP {response.status_code})", status)


def _line(endpoint: dict[str, Any]) -> str:
    state = "enabled" if endpoint["enabled"] else "disabled"
    return f"{endpoint['id']}  {state:<8}  {endpoint['url']}  {','.join(endpoint['events'])}"


def _detail(endpoint: dict[str, Any]) -> str:
    lines = [_line(endpoint)]
    if not endpoint["enabled"]:
        lines.append(f"  disabled: {endpoint.get('disabled_reason') or 'yes'}")
    for key in (
        "description",
        "task_types",
        "consecutive_failures",
        "last_success_at",
        "last_failure_at",
        "previous_secret_expires_at",
        "created_at",
    ):
        if endpoint.get(key) not in (None, "", [], 0):
            lines.append(f"  {key}: {endpoint[key]}")
    return "\n".join(lines)


def _delivery(delivery: dict[str, Any]) -> str:
    attempts = (
        ", ".join(a["error"] or f"HTTP {a['status_code']}" for a in delivery["attempts"])
        or "not attempted yet"
    )
    return (
        f"{delivery['id']}  {delivery['state']:<9}  {delivery['event']:<14}  "
        f"task {delivery['task_id']}  attempts: {attempts}"
    )
