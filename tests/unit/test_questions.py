"""Questions and answers, without I/O: what a question may be, and which answers it takes."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.clock import utcnow
from shared.questions import (
    APPROVE,
    DENY,
    MAX_ANSWER_BYTES,
    Choice,
    Question,
    answer_errors,
    asked,
    form_errors,
    key_of,
    no_answer_message,
)
from shared.tasktypes.builtin import ASK_FORM


def form(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def test_an_approval_is_answered_approve_or_deny_and_nothing_else() -> None:
    question = Question.approval("Power off erp-01?", danger=True)
    assert [(c.value, c.danger) for c in question.choices or ()] == [(APPROVE, True), (DENY, False)]
    assert answer_errors(question, APPROVE) == []
    assert answer_errors(question, DENY) == []
    for wrong in ("Approve", None, ["approve"], {"approve": True}, 1):
        [error] = answer_errors(question, wrong)
        assert (error["loc"], error["type"]) == ([], "choice")


@pytest.mark.parametrize(
    "fields",
    [
        {},  # neither choices nor a form
        {"choices": [Choice(value="a", label="A")] * 2, "form": form(a={"type": "string"})},
        {"choices": [Choice(value="a", label="A"), Choice(value="a", label="B")]},
        {"choices": [Choice(value="a", label="A")]},  # one choice is no choice
        {"form": {"type": "array"}},
        {"form": form()},
        {"form": form(nested={"type": "object"})},
        # Nothing a check of an answer would have to fetch from elsewhere:
        {"form": form(a={"type": "string", "$ref": "http://127.0.0.1:9/a.json"})},
        {"form": {**form(a={"type": "string"}), "$id": "http://127.0.0.1:9/form.json"}},
        {"form": {"type": "object", "properties": {"a": {"type": "string"}}, "minProperties": -1}},
        {"choices": [Choice(value="a", label="A"), Choice(value="b", label="B")], "default": "c"},
        {"form": form(n={"type": "integer"}), "default": {"n": "one"}},
        {"choices": [Choice(value="a", label="A"), Choice(value="b", label="B")], "timeout_s": 0},
        {"choices": [Choice(value="a", label="A"), Choice(value="b", label="B")], "key": "a b"},
    ],
)
def test_a_question_the_ui_could_not_draw_or_that_could_not_be_answered_is_refused(
    fields: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        Question(title="Which?", **fields)


def test_a_form_takes_what_its_schema_takes_and_says_where_the_rest_is_wrong() -> None:
    question = Question(title="Details", form=ASK_FORM)
    assert form_errors(ASK_FORM) == []
    assert answer_errors(question, {"reason": "month end", "copies": 3}) == []
    errors = answer_errors(question, {"reason": "no", "copies": 11, "size": "huge", "x": 1})
    assert sorted(tuple(e["loc"]) for e in errors) == [(), ("copies",), ("reason",), ("size",)]
    assert {e["type"] for e in errors} == {"additionalProperties", "maximum", "minLength", "enum"}
    [missing] = answer_errors(question, {"reason": "month end"})
    assert missing["type"] == "required"


def test_an_answer_that_cannot_be_stored_or_is_too_large_is_refused() -> None:
    question = Question(
        title="Anything", form={"type": "object", "properties": {"a": {"type": "integer"}}}
    )
    [huge] = answer_errors(question, {"a": 2**70})
    assert (huge["loc"], huge["type"]) == (["a"], "json_int_too_large")
    [nul] = answer_errors(question, {"a": 1, "b\x00": 1})
    assert nul["type"] == "json_key_nul"
    [large] = answer_errors(question, {"a": 1, "b": "x" * MAX_ANSWER_BYTES})
    assert large["type"] == "too_large"


def test_a_question_is_keyed_by_its_place_unless_named_and_times_out_after_its_timeout() -> None:
    at = utcnow()
    plain = Question.approval("Go on?", timeout_s=90)
    named = Question.approval("Go on?", key="go")
    assert (key_of(plain, 2), key_of(named, 2)) == ("question-2", "go")
    stored = asked(plain, "question-2", at)
    assert (stored.key, stored.asked_at, stored.deadline) == (
        "question-2",
        at,
        at + timedelta(seconds=90),
    )
    assert no_answer_message(stored) == "no answer to 'Go on?' within 90 s"


def test_the_worked_example_of_docs_questions_runs_and_its_test_passes() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "questions.md").read_text()
    [example] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "MemoryContext" in b]
    namespace: dict[str, Any] = {}
    exec(compile(example, "docs/questions.md", "exec"), namespace)
    registry = namespace["Registry"]()
    namespace["register"](registry)
    assert registry.get("db.drop").title == "Drop a table"
    asyncio.run(namespace["test_drop_asks_for_approval_and_a_reason_then_drops"]())
