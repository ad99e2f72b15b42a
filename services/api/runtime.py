"""What every request handler of the API needs, built once at start-up, and its dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shared.registry import Registry
from shared.service import TaskService
from shared.settings import Settings
from shared.store import TaskStore


@dataclass
class Runtime:
    """The API's connected parts."""

    settings: Settings
    store: TaskStore
    service: TaskService
    registry: Registry


def get_runtime(request: Request) -> Runtime:
    """The runtime the app's lifespan built."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_user(request: Request) -> str:
    """The user a request acts as (one development user until users and tokens exist)."""
    runtime: Runtime = request.app.state.runtime
    return runtime.settings.dev_user


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
UserDep = Annotated[str, Depends(get_user)]
