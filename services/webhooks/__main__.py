"""`python -m services.webhooks`: run a webhook sender until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from services.webhooks.app import Sender
from shared.logs import setup_logging
from shared.settings import Settings


async def serve(settings: Settings) -> None:
    """Run one sender until a stop signal arrives."""
    sender = Sender(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sender.start()
    try:
        await stop.wait()
    finally:
        await sender.stop()


def main() -> None:
    """Entry point."""
    settings = Settings()
    setup_logging("webhooks", settings.log_format, settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
