"""What the notifier sends: its encoders. No sockets."""

from __future__ import annotations

import json

from services.notifier.outbound import error_message, task_message


def test_error_messages_carry_problem_details() -> None:
    message = json.loads(
        error_message("urn:tasklight:problem:not-found", "no task x", "s1", tasks=["x"])
    )

    assert message == {
        "type": "error",
        "id": "s1",
        "problem": {
            "type": "urn:tasklight:problem:not-found",
            "title": "Not found",
            "status": 404,
            "detail": "no task x",
            "tasks": ["x"],
        },
    }


def test_a_task_message_wraps_the_rendered_task_and_escapes_the_subscription_id() -> None:
    frame = task_message('s"1', b'{"id":"t","version":2}')

    assert json.loads(frame) == {"type": "task", "sub": 's"1', "task": {"id": "t", "version": 2}}
