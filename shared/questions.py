"""Questions a handler asks its task's owner mid-run, and the answers they give (pure: no I/O).

    answer = await ctx.ask(Question.approval("Power off db-01?", "It serves production."))
    if answer != APPROVE:
        raise TaskFailed("not approved")

A question has a title, a text, and either choices (a button each) or a small form, given as a
JSON Schema of an object whose properties are strings, numbers, integers or booleans (what the
web UI can draw as fields). It has a timeout: when it passes unanswered, the question's
`default` is taken as the answer if it has one, else the task fails with `no_answer`.

Asking frees the worker: the run ends there, and the task waits in the phase `awaiting_answer`
with the question stored in it. The answer queues the task again; a run on any worker runs the
handler again from its start, and this time `ctx.ask` returns the stored answer of the question
asked at that point, matched by its `key` (by default, its place among the run's questions:
`question-1`, `question-2`, ...). So what a handler does before it asks is done again after the
answer: make it idempotent, or ask first (as workflow engines that replay a function do).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.jsonlimits import violations

#: The answer of an approval's approve button, and of its deny button.
APPROVE = "approve"
DENY = "deny"
#: Seconds a question waits by default (a day), and at most (the default retention, 30 days).
DEFAULT_TIMEOUT_S = 24 * 3600.0
MAX_TIMEOUT_S = 30 * 24 * 3600.0
#: Largest form schema, and largest answer, as JSON, in bytes.
MAX_FORM_BYTES = 16 * 1024
MAX_ANSWER_BYTES = 16 * 1024
#: Fields one form may have.
MAX_FORM_FIELDS = 20
#: The JSON types a form field may have: each is one input of the web UI's form.
FIELD_TYPES = frozenset({"string", "integer", "number", "boolean"})
_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class Choice(BaseModel):
    """One possible answer of a question with choices: the value answered, the button's label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1, max_length=100)
    label: str = Field(min_length=1, max_length=200)
    #: Drawn as the dangerous choice (a red button).
    danger: bool = False


class Question(BaseModel):
    """What a handler asks: a title, a text, and either `choices` or a `form` (a JSON Schema).

    `default` is the answer taken when `timeout_s` passes without one; None: the task then
    fails with `no_answer`. `key` names the question among the task's questions (default: its
    place in the run, `question-<n>`); the same key is the same question, answered once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=200)
    text: str = Field(default="", max_length=2000)
    choices: tuple[Choice, ...] | None = Field(default=None, min_length=2, max_length=10)
    form: dict[str, Any] | None = None
    key: str | None = Field(default=None, pattern=_KEY_PATTERN)
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)
    default: Any = None

    @model_validator(mode="after")
    def _answerable(self) -> Question:
        if (self.choices is None) == (self.form is None):
            raise ValueError("a question has either choices or a form, not both or neither")
        if self.choices is not None:
            values = [choice.value for choice in self.choices]
            if len(set(values)) != len(values):
                raise ValueError("the values of a question's choices must differ")
        if self.form is not None:
            form_problems = form_errors(self.form)
            if form_problems:
                raise ValueError(f"form: {'; '.join(form_problems)}")
        if self.default is not None:
            wrong = answer_errors(self, self.default)
            if wrong:
                raise ValueError(f"default: {'; '.join(e['msg'] for e in wrong)}")
        return self

    @classmethod
    def approval(
        cls,
        title: str,
        text: str = "",
        *,
        approve: str = "Approve",
        deny: str = "Deny",
        danger: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        default: str | None = None,
        key: str | None = None,
    ) -> Question:
        """An approve / deny question: answered `APPROVE` or `DENY` (`danger`: approving is the
        dangerous choice)."""
        return cls(
            title=title,
            text=text,
            choices=(
                Choice(value=APPROVE, label=approve, danger=danger),
                Choice(value=DENY, label=deny),
            ),
            timeout_s=timeout_s,
            default=default,
            key=key,
        )


class AskedQuestion(Question):
    """A question as the task stores it while it waits: with its key, and when it times out."""

    key: str = Field(pattern=_KEY_PATTERN)
    asked_at: datetime
    #: When the timeout passes: then the default is answered, or the task fails.
    deadline: datetime


class Answer(BaseModel):
    """An answer as the task keeps it: to which question, what, by whom (None: the timeout)."""

    key: str
    value: Any
    by: str | None = None
    at: datetime
    #: Taken from the question's default when its timeout passed.
    timed_out: bool = False


class AnswerNeeded(BaseException):
    """Raised by `ctx.ask` for a question that has no answer yet: the run ends there and the
    task waits for its owner. A `BaseException`, so that a handler's `except Exception` does
    not swallow it; a handler should never catch it."""

    def __init__(self, question: AskedQuestion) -> None:
        super().__init__(f"waiting for an answer to {question.key!r}")
        self.question = question


def key_of(question: Question, place: int) -> str:
    """The key of `question`, asked as the run's `place`-th (1 for the first)."""
    return question.key or f"question-{place}"


def asked(question: Question, key: str, at: datetime) -> AskedQuestion:
    """`question` as stored when asked at `at` under `key`."""
    fields = question.model_dump(exclude={"key"})
    deadline = at + timedelta(seconds=question.timeout_s)
    return AskedQuestion(**fields, key=key, asked_at=at, deadline=deadline)


def no_answer_message(question: Question) -> str:
    """Why a task failed whose question timed out with no default answer."""
    return f"no answer to {question.title!r} within {_duration(question.timeout_s)}"


def _duration(seconds: float) -> str:
    for unit_s, unit in ((86400, "days"), (3600, "h"), (60, "min")):
        if seconds >= 2 * unit_s:
            return f"{seconds / unit_s:g} {unit}"
    return f"{seconds:g} s"


def form_errors(form: dict[str, Any]) -> list[str]:
    """Why `form` is not a form the web UI can draw (empty if it is): a valid JSON Schema of an
    object with up to `MAX_FORM_FIELDS` properties of the `FIELD_TYPES`."""
    if len(json.dumps(form)) > MAX_FORM_BYTES:
        return [f"larger than {MAX_FORM_BYTES} bytes as JSON"]
    try:
        Draft202012Validator.check_schema(form)
    except SchemaError as exc:
        return [f"not a JSON Schema: {exc.message}"]
    if _outside_refs(form):
        # Self-contained: checking an answer must never fetch another schema from anywhere.
        return ["a form refers to no schema but its own parts (no $id, every $ref starts with #)"]
    if form.get("type") != "object":
        return ['a form is a schema of "type": "object"']
    properties = form.get("properties")
    if not isinstance(properties, dict) or not properties:
        return ["a form needs at least one property"]
    problems = []
    if len(properties) > MAX_FORM_FIELDS:
        problems.append(f"at most {MAX_FORM_FIELDS} properties")
    for name, field in properties.items():
        if not isinstance(field, dict) or field.get("type") not in FIELD_TYPES:
            problems.append(f"property {name!r} must have a type of {sorted(FIELD_TYPES)}")
    return problems


def _outside_refs(node: Any) -> bool:
    """Whether a schema names an identity or refers anywhere outside itself."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$id" or (key in ("$ref", "$dynamicRef") and not str(value).startswith("#")):
                return True
            if _outside_refs(value):
                return True
    elif isinstance(node, list):
        return any(_outside_refs(item) for item in node)
    return False


def answer_errors(question: Question, value: Any) -> list[dict[str, Any]]:
    """Why `value` does not answer `question` (empty if it does), as validation errors located
    within the answer (`loc`), the way the API reports a bad field."""
    if len(json.dumps(value, default=str)) > MAX_ANSWER_BYTES:
        message = f"an answer is at most {MAX_ANSWER_BYTES} bytes as JSON"
        return [{"loc": [], "msg": message, "type": "too_large"}]
    if question.choices is not None:
        values = [choice.value for choice in question.choices]
        if value in values:
            return []
        message = f"must be one of {values}"
        return [{"loc": [], "msg": message, "type": "choice"}]
    assert question.form is not None
    validator = Draft202012Validator(question.form)
    errors = [
        {"loc": list(error.absolute_path), "msg": error.message, "type": str(error.validator)}
        for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path)))
    ]
    return errors or violations(value, [])
