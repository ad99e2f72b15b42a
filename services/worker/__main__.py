"""`python -m services.worker`: run a worker until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from services.worker.app import Worker
from shared.logs import setup_logging
from shared.settings import Settings
from shared.tracing import setup_tracing


async def serve(settings: Settings) -> None:
    """Run one worker until a stop signal arrives."""
    worker = Worker(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    try:
        await stop.wait()
    finally:
        await worker.stop()


def main() -> None:
    """Entry point."""
    settings = Settings()
    setup_logging("worker", settings.log_format, settings.log_level)
    setup_tracing("worker", settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
