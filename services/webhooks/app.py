"""The webhook sender's composition root: settings → store → recorder, dispatcher, probes.

Run as its own service (`python -m services.webhooks`), so that no receiver, however slow, holds
up a worker or the api. Several senders may run: recording is idempotent and every attempt is
claimed with a compare-and-set, so they share the work without sending anything twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from services.webhooks.directory import Directory
from services.webhooks.dispatcher import Dispatcher
from services.webhooks.recorder import Recorder
from shared.probes import ProbeServer
from shared.settings import Settings
from shared.store import Store, open_store
from shared.webhooks import metrics

log = logging.getLogger(__name__)


class Sender:
    """One sender process's parts; `start()` begins recording and sending, `stop()` ends it."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.name = f"webhooks-{os.getpid()}@{socket.gethostname()}"
        #: Its own store by default (one given is closed by `stop` all the same).
        self.store = store or open_store(settings)
        self.directory = Directory(self.store.webhooks.endpoints)
        self.dispatcher = Dispatcher(self.store, self.directory, settings, self.name)
        self.recorder = Recorder(
            self.store,
            self.directory,
            poll_s=settings.webhook_poll_s,
            on_recorded=self.dispatcher.wake.set,
        )
        self.probes = ProbeServer(
            settings.webhooks_host,
            settings.webhooks_port,
            {"database": self.store.ping},
            registry=metrics.REGISTRY,
            service="webhook sender",
        )
        self._background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Check the schema, then record and send in the background."""
        await self.store.require_schema()
        try:
            await self.probes.start()
        except OSError as exc:
            log.error("webhook sender probes not served (%s); set TASKLIGHT_WEBHOOKS_PORT", exc)
        self._background = [
            asyncio.create_task(self.recorder.run_forever()),
            asyncio.create_task(self.dispatcher.run_forever()),
        ]
        log.info("webhook sender %s running", self.name)

    async def stop(self) -> None:
        """Stop recording and looking for due deliveries, let attempts in flight end (within the
        attempt timeout), then close."""
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.dispatcher.stop(self.settings.webhook_timeout_s)
        await self.store.close()
        await self.probes.stop()
