"""Task types are registered once by name, with a JSON Schema for their arguments."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from pydantic import BaseModel

from shared.registry import Registry, TaskType, UnknownTaskType, load_registry
from shared.retries import RetryPolicy


class NoArgs(BaseModel):
    pass


async def nothing(args: NoArgs, ctx: Any) -> None:
    """Do nothing."""


def test_the_builtin_types_are_loaded_only_when_asked_for() -> None:
    names = {t.name for t in load_registry(builtin_tasks=True)}
    assert {"test.count", "test.fail", "test.spawn", "demo.vm_power_off"} <= names
    assert {t.name for t in load_registry()} == set()


def test_a_name_can_be_registered_only_once() -> None:
    registry = Registry()
    registry.add(TaskType("x.one", "One", "", NoArgs, nothing))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(TaskType("x.one", "One again", "", NoArgs, nothing))


def test_an_unknown_name_raises_unknown_task_type() -> None:
    with pytest.raises(UnknownTaskType):
        Registry().get("nope")


def test_the_decorator_registers_a_handler_with_its_docstring_as_description() -> None:
    registry = Registry()
    registry.task("x.nothing", NoArgs, title="Nothing")(nothing)
    assert registry.get("x.nothing").description == "Do nothing."


def test_the_decorator_takes_every_option_of_a_task_type() -> None:
    registry = Registry()
    policy = RetryPolicy(max_attempts=5)
    registry.task(
        "x.nothing", NoArgs, title="Nothing", retry=policy, on_worker_lost="requeue", max_runs=7
    )(nothing)
    task_type = registry.get("x.nothing")
    assert (task_type.retry, task_type.on_worker_lost, task_type.max_runs) == (policy, "requeue", 7)


def test_modules_named_in_settings_register_their_types() -> None:
    module = types.ModuleType("tasklight_test_plugin")

    def register(registry: Registry) -> None:
        registry.add(TaskType("plugin.nothing", "Nothing", "", NoArgs, nothing))

    module.register = register  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        registry = load_registry(" tasklight_test_plugin , ")
    finally:
        del sys.modules[module.__name__]
    assert {t.name for t in registry} == {"plugin.nothing"}


def test_a_type_publishes_the_json_schema_of_its_arguments() -> None:
    schema = load_registry(builtin_tasks=True).get("test.count").schema()
    assert schema["properties"]["rounds"]["minimum"] == 0
    assert schema["additionalProperties"] is False
