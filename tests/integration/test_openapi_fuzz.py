"""Property-based test of the whole HTTP API against its own OpenAPI document (schemathesis).

The document is read from the running server, every operation in it is sent generated requests,
and every answer is checked: no 5xx, only documented status codes, content types and headers, and
a body that matches the documented schema; an invalid request must be refused with a 4xx. The run
is bounded (a few dozen examples per operation and mode) and derandomized, so that a failure
reproduces; each distinct one is reported with its request as a curl command and the answer.

Random data alone would mostly meet 404s and 422s, so the run also reaches the success paths:
tasks in every state are made first (a worker runs some of them to their end), their ids are
offered to the operations that take one, and the submission schema is sharpened with the
registered task types' own argument schemas (`/api/v1/task-types`), so that generated submissions
are accepted and queued.
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from services.worker.app import Worker
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.settings import Settings
from shared.store import open_store
from shared.webhooks.events import EventType, delivery_id
from shared.webhooks.records import Delivery, DeliveryState
from tests.support import eventually

pytestmark = pytest.mark.integration

Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]

#: Generated requests per operation and mode; the whole test takes well under a minute. Set
#: `TASKLIGHT_FUZZ_EXAMPLES` to search longer, by hand.
MAX_EXAMPLES = int(os.environ.get("TASKLIGHT_FUZZ_EXAMPLES", "30"))
#: Seconds one request may take before it counts as a failure: a hang is a defect too.
REQUEST_TIMEOUT_S = 10.0
#: Accepted submissions are where the free-form parts of a request (`metadata`, `ui`) reach the
#: database: they get this many times the examples.
SUBMISSION_FACTOR = int(os.environ.get("TASKLIGHT_FUZZ_SUBMISSION_FACTOR", "4"))
#: Waiting tasks made afresh for each operation that changes a task, so that each meets one.
FRESH_TASKS = 3

#: What every answer must satisfy, whatever was sent.
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: A request that breaks the document must, besides, be refused with a 4xx. The twin check for
#: valid requests, `positive_data_acceptance`, is not used: the document cannot say which task
#: type names exist, so a submission of an unknown type is valid to it and rightly refused (422).
NEGATIVE_CHECKS: list[CheckFunction] = [*CHECKS, negative_data_rejection]

#: Operations whose success path no generated request can reach, and why. The run asserts a 2xx
#: from every other operation: a run that met only errors (every request refused for want of
#: credentials, say) would otherwise pass having tested nothing.
NO_SUCCESS_EXPECTED = {
    "POST /api/v1/session": "signing in takes a user's password, which no generated request "
    "knows (the run authenticates with the client's token instead)",
}

TASKS = "/api/v1/tasks"
WEBHOOKS = "/api/v1/webhooks"
#: A webhook destination every run may register: a public address, so no name is looked up (no
#: sender runs: nothing is sent there).
PUBLIC_URL = "https://1.1.1.1/tasklight-fuzz"
#: The submission's schema, which the sharpened document narrows to the registered types.
SUBMISSION_SCHEMA = "Submission"
#: The answer's schema, which the sharpened document narrows to what `test.ask` asks.
ANSWER_SCHEMA = "AnswerBody"


def bounded(examples: int) -> settings:
    """Bounded and reproducible: the same examples every run and no example database. There is
    no shrinking either: a failing example is recorded, not raised, so nothing is to shrink."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        # Each example is a real HTTP round trip to a server on a real database and broker.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@dataclass
class Finding:
    """One distinct contract violation, with the first request that showed it."""

    operation: str
    mode: str
    status: int | None
    #: What failed: schemathesis' failure codes and titles (ST101 Server error, ...).
    kinds: str
    report: str
    #: How many requests showed it.
    times: int = 0


@dataclass
class Run:
    """Sends the generated requests, synchronously (run it in a thread beside the server's event
    loop), and keeps what they met: status codes by operation and mode, and the violations."""

    base_url: str
    headers: dict[str, str]
    statuses: dict[str, dict[str, Counter[int]]] = field(default_factory=dict)
    findings: dict[tuple[str, str, str, int | None], Finding] = field(default_factory=dict)
    #: Webhook endpoints with one delivery each, (endpoint id, delivery id), offered to the
    #: operations that take them.
    hooks: list[tuple[str, str]] = field(default_factory=list)
    #: Operations no request of which can break the document (a free-form string path parameter
    #: and nothing else, say): they get no invalid requests, and the summary says so.
    nothing_to_negate: list[str] = field(default_factory=list)

    def exercise(self, case: AnyCase, mode: str, checks: list[CheckFunction]) -> None:
        """Send `case` and check the answer; record a violation rather than stop at it."""
        label = case.operation.label
        try:
            response = case.call(
                base_url=self.base_url, headers=self.headers, timeout=REQUEST_TIMEOUT_S
            )
        except requests.RequestException as exc:
            curl = case.as_curl_command(headers=self.headers)
            self._record(label, mode, None, "no answer", f"{type(exc).__name__}: {exc}\n{curl}")
            return
        seen = self.statuses.setdefault(label, {}).setdefault(mode, Counter())
        seen[response.status_code] += 1
        try:
            case.validate_response(
                response,
                checks=checks,
                headers=self.headers,
                transport_kwargs={"base_url": self.base_url, "headers": self.headers},
            )
        except schemathesis.errors.FailureGroup as group:
            kinds = ", ".join(sorted({f"{f.code} {f.title}" for f in group.exceptions}))
            self._record(label, mode, response.status_code, kinds, str(group))

    def _record(self, label: str, mode: str, status: int | None, kinds: str, report: str) -> None:
        found = self.findings.setdefault(
            (label, mode, kinds, status), Finding(label, mode, status, kinds, report)
        )
        found.times += 1

    def drive(
        self,
        operation: Operation,
        strategy: st.SearchStrategy[AnyCase],
        mode: str,
        examples: int = MAX_EXAMPLES,
    ) -> None:
        """Send `examples` of `strategy` for `operation`, bounded and derandomized."""
        negative = mode == GenerationMode.NEGATIVE.value
        checks = NEGATIVE_CHECKS if negative else CHECKS

        @bounded(examples)
        @given(case=strategy)
        def send(case: AnyCase) -> None:
            self.exercise(case, mode, checks)

        try:
            send()
        except hypothesis.errors.Unsatisfiable:
            if not negative:
                raise
            self.nothing_to_negate.append(operation.label)

    def fuzz(self, operations: list[Operation], task_ids: list[str], negative: bool) -> None:
        """Each operation's examples from the document, then generated valid requests, and
        invalid ones too with `negative`."""
        for operation in operations:
            ids = task_ids
            if operation.method.upper() != "GET" and takes_task_id(operation):
                ids = [*task_ids, *(self.submit_waiting() for _ in range(FRESH_TASKS))]
            for example in operation.get_strategies_from_examples():
                self.drive(operation, example, "examples")
            positive = cases(operation, GenerationMode.POSITIVE, ids, self.hooks)
            self.drive(operation, positive, GenerationMode.POSITIVE.value)
            if negative:
                invalid = cases(operation, GenerationMode.NEGATIVE, ids, self.hooks)
                self.drive(operation, invalid, GenerationMode.NEGATIVE.value)

    def submit_waiting(self) -> str:
        """A new task, which stays `waiting` while no worker runs."""
        response = requests.post(
            f"{self.base_url}{TASKS}",
            json={"name": "test.count", "args": {}},
            headers=self.headers,
            timeout=REQUEST_TIMEOUT_S,
        )
        assert response.status_code == 202, response.text
        task_id: str = response.json()["id"]
        return task_id

    def summary(self) -> str:
        """The status codes each operation answered, by mode."""
        lines = []
        for label, by_mode in sorted(self.statuses.items()):
            modes = "; ".join(
                f"{mode} " + " ".join(f"{status}x{n}" for status, n in sorted(seen.items()))
                for mode, seen in by_mode.items()
            )
            lines.append(f"  {label}: {modes}")
        if self.nothing_to_negate:
            lines.append(f"  (no invalid request possible: {', '.join(self.nothing_to_negate)})")
        return "\n".join(lines)

    def report(self) -> str:
        """The violations, each with its request as curl, the answer's status and body."""
        parts = [f"{len(self.findings)} contract violation(s) of the OpenAPI document:"]
        for n, found in enumerate(self.findings.values(), 1):
            parts.append(
                f"\n--- {n}. {found.operation} [{found.mode}] status {found.status}: "
                f"{found.kinds} ({found.times} request(s); the first:)\n{found.report.strip()}"
            )
        parts.append(f"\nStatus codes met:\n{self.summary()}")
        return "\n".join(parts)

    def without_success(self) -> list[str]:
        """Operations that no request got a 2xx from, but for those in `NO_SUCCESS_EXPECTED`."""
        return sorted(
            label
            for label, by_mode in self.statuses.items()
            if label not in NO_SUCCESS_EXPECTED
            and not any(200 <= status < 300 for seen in by_mode.values() for status in seen)
        )


def ordered_operations(schema: OpenApiSchema) -> list[Operation]:
    """Every operation of `schema`: reads first, then the other writes, deletions last (of one
    task before of many), so that no write removes what a later operation is to find. An
    operation schemathesis cannot read fails the test here: none is left out unseen."""
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    rank = {"GET": 0, "DELETE": 2}
    return sorted(found, key=lambda op: (rank.get(op.method.upper(), 1), -len(op.path)))


def takes_task_id(operation: Operation) -> bool:
    """Whether `operation` addresses one task by its id."""
    return operation.get_parameter("task_id", "path") is not None


def cases(
    operation: Operation,
    mode: GenerationMode,
    task_ids: list[str],
    hooks: list[tuple[str, str]] | None = None,
) -> st.SearchStrategy[AnyCase]:
    """Generated requests for `operation`; where it takes a task id (in its path, or as the
    list's cursor), valid ones name an existing task half the time, to reach its success path;
    where it takes a webhook endpoint (and delivery), one of `hooks` (endpoint id, delivery id)."""
    generated = operation.as_strategy(generation_mode=mode)
    if mode is not GenerationMode.POSITIVE or not (task_ids or hooks):
        return generated
    if operation.get_parameter("endpoint_id", "path") is not None:
        if not hooks:
            return generated
        delivery = operation.get_parameter("delivery_id", "path") is not None
        known = [
            operation.as_strategy(
                path_parameters={"endpoint_id": e, **({"delivery_id": d} if delivery else {})}
            )
            for e, d in hooks
        ]
    elif not task_ids:
        return generated
    elif takes_task_id(operation):
        known = [operation.as_strategy(path_parameters={"task_id": i}) for i in task_ids]
    elif operation.get_parameter("cursor", "query") is not None:
        known = [operation.as_strategy(query={"cursor": i}) for i in task_ids]
    else:
        return generated
    return st.one_of(generated, st.one_of(known))


def sharpened(document: dict[str, Any], task_types: list[dict[str, Any]]) -> OpenApiSchema:
    """The document with its `Submission` narrowed to the registered task types: `name` one of
    them and `args` valid for it; and its answers to the approve / deny of `test.ask`. The
    responses stay as they are, and so do the checks."""
    document = copy.deepcopy(document)
    components = document["components"]["schemas"]
    components[ANSWER_SCHEMA]["properties"]["answer"] = {"enum": ["approve", "deny"]}
    submission = components[SUBMISSION_SCHEMA]
    variants = []
    for task_type in task_types:
        name = task_type["name"]
        properties = {
            **submission["properties"],
            "name": {"const": name},
            "args": _hoisted(task_type["args_schema"], components, prefix=name),
        }
        variants.append({**submission, "properties": properties, "required": ["name", "args"]})
    components[SUBMISSION_SCHEMA] = {"oneOf": variants}
    return schemathesis.openapi.from_dict(document)


def _hoisted(args_schema: dict[str, Any], components: dict[str, Any], prefix: str) -> Any:
    """A task type's JSON Schema made valid inside the document: its own `$defs` move to the
    document's components, under names of its own, and its references follow them."""
    defs: dict[str, Any] = args_schema.get("$defs", {})
    renamed = {name: f"{prefix}.{name}" for name in defs}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node = {**node, "$ref": f"#/components/schemas/{renamed[ref[8:]]}"}
            return {key: rewrite(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    for name, definition in defs.items():
        components[renamed[name]] = rewrite(definition)
    return rewrite(args_schema)


def with_public_destinations(document: dict[str, Any]) -> OpenApiSchema:
    """The document with a new endpoint's `url` narrowed to `PUBLIC_URL`, so that generated
    registrations are accepted (any other is refused, or needs a name looked up)."""
    document = copy.deepcopy(document)
    endpoint = document["components"]["schemas"]["EndpointIn"]
    endpoint["properties"]["url"] = {"type": "string", "enum": [PUBLIC_URL]}
    return schemathesis.openapi.from_dict(document)


async def seed_webhooks(api: httpx.AsyncClient, settings: Settings) -> list[tuple[str, str]]:
    """Two webhook endpoints, each with one recorded delivery (as the sender records them)."""
    store = open_store(settings)
    hooks = []
    try:
        for n in range(2):
            made = await api.post(WEBHOOKS, json={"url": PUBLIC_URL, "events": ["task.failed"]})
            assert made.status_code == 201, made.text
            endpoint = made.json()
            now = utcnow()
            delivery = Delivery(
                id=delivery_id(endpoint["id"], f"task-{n}", "ended"),
                endpoint_id=endpoint["id"],
                owner=endpoint["owner"],
                task_id=new_task_id(),
                event=EventType.FAILED,
                payload='{"type":"task.failed"}',
                state=DeliveryState.FAILED,
                window_from=now,
                created_at=now,
                updated_at=now,
            )
            assert await store.webhooks.deliveries.record([delivery]) == 1
            hooks.append((endpoint["id"], delivery.id))
    finally:
        await store.close()
    return hooks


async def submit(api: httpx.AsyncClient, name: str, args: dict[str, Any], **extra: Any) -> str:
    """Submit a task through the API; its id."""
    response = await api.post(TASKS, json={"name": name, "args": args, **extra})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def reaches(api: httpx.AsyncClient, task_id: str, *states: str, of: str = "state") -> None:
    """Wait until the task is in one of `states` (or phases, `of="phase"`)."""

    async def state() -> str:
        response = await api.get(f"{TASKS}/{task_id}")
        assert response.status_code == 200, response.text
        current: str = response.json()[of]
        return current

    await eventually(state, lambda current: current in states, timeout_s=30)


async def seed_with_worker(api: httpx.AsyncClient, settings: Settings) -> Worker:
    """A running worker, and tasks that it completed, failed, spawned a child for, runs, and
    one whose question waits for an answer."""
    worker = Worker(settings)
    await worker.start()
    try:
        completed = await submit(api, "test.count", {"rounds": 1, "round_s": 0})
        failed = await submit(
            api,
            "test.fail",
            {"after_s": 0, "message": "fails on purpose"},
            ui={"next_url": "/done", "failure_message": "It failed."},
            metadata={"origin": "fuzz"},
        )
        parent = await submit(api, "test.spawn", {"children": 1, "rounds": 0, "round_s": 0})
        running = await submit(api, "test.count", {"rounds": 1000, "round_s": 1})
        asking = await submit(api, "test.ask", {})
        await reaches(api, completed, "completed")
        await reaches(api, failed, "failed")
        await reaches(api, parent, "completed")
        await reaches(api, running, "running")
        await reaches(api, asking, "awaiting_answer", of="phase")
    except BaseException:
        await asyncio.wait_for(worker.stop(grace_s=0), timeout=60)
        raise
    return worker


async def every_task_id(api: httpx.AsyncClient, phase: str | None = None) -> list[str]:
    """The ids of the tasks the API lists (those in `phase`, if given)."""
    response = await api.get(TASKS, params={"limit": 500})
    assert response.status_code == 200, response.text
    tasks = response.json()["results"]
    return [task["id"] for task in tasks if phase in (None, task["phase"])]


# About 60 requests for each of 30 operations, each a real round trip: a loaded machine takes
# minutes.
@pytest.mark.timeout(300)
async def test_every_operation_keeps_to_the_openapi_document(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    started = time.monotonic()
    base_url = str(api.base_url).rstrip("/")
    # Whatever the fixture's client sends with each request (its credentials, say) goes with
    # each generated request too.
    headers = dict(api.headers)
    # schemathesis is synchronous and the server runs on this test's event loop: every call of
    # it that sends a request runs in a thread, or the server could never answer.
    schema = await asyncio.to_thread(
        schemathesis.openapi.from_url,
        f"{base_url}/openapi.json",
        headers=headers,
        timeout=REQUEST_TIMEOUT_S,
    )
    operations = ordered_operations(schema)
    run = Run(base_url, headers)
    run.hooks = await seed_webhooks(api, settings)

    # 1. With a worker at work, the reads meet running, completed and failed tasks, a parent and
    #    its child, and a live worker.
    worker = await seed_with_worker(api, settings)
    try:
        reads = [op for op in operations if op.method.upper() == "GET"]
        await asyncio.to_thread(run.fuzz, reads, await every_task_id(api), False)
    finally:
        # It hands the running task back: that one is `waiting` again, with an attempt.
        await asyncio.wait_for(worker.stop(grace_s=0), timeout=60)

    # 2. With no worker, so that whatever the run submits only waits: submissions of the
    #    registered types, then every operation, with valid and invalid requests, writes too.
    task_types = (await api.get("/api/v1/task-types")).json()
    sharp = sharpened(schema.raw_schema, task_types)
    submissions = sharp[TASKS]["POST"]
    await asyncio.to_thread(
        run.drive,
        submissions,
        submissions.as_strategy(),
        "registered types",
        MAX_EXAMPLES * SUBMISSION_FACTOR,
    )
    # Answers that the question waiting for one takes (once; then 409), before anything else
    # (a cancel, say) can settle it.
    answers = sharp[f"{TASKS}/{{task_id}}/answer"]["POST"]
    asking = await every_task_id(api, phase="awaiting_answer")
    assert asking, "no task waits for an answer"
    # A few suffice: the first answer is taken, and every later one is 409.
    to_asking = st.one_of([answers.as_strategy(path_parameters={"task_id": i}) for i in asking])
    await asyncio.to_thread(run.drive, answers, to_asking, "asked questions", 5)
    registrations = with_public_destinations(schema.raw_schema)[WEBHOOKS]["POST"]
    await asyncio.to_thread(
        run.drive, registrations, registrations.as_strategy(), "public destination"
    )
    await asyncio.to_thread(run.fuzz, operations, await every_task_id(api), True)

    print(f"\nOpenAPI fuzz run, {time.monotonic() - started:.1f} s:\n{run.summary()}")
    if run.findings:
        pytest.fail(run.report(), pytrace=False)
    if unsuccessful := run.without_success():
        pytest.fail(f"no request reached a success path of {unsuccessful}:\n{run.summary()}")
    if never_called := sorted({op.label for op in operations} - set(run.statuses)):
        pytest.fail(f"operations no request was sent to: {never_called}")
