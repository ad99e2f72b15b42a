"""`python -m services.notifier`: serve WebSocket push until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.notifier.app import Notifier
from shared.logs import setup_logging
from shared.settings import Settings
from shared.tracing import setup_tracing


async def serve(settings: Settings) -> None:
    """Run one notifier until a stop signal arrives; then close connections with 1001."""
    notifier = Notifier(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await notifier.start()
    try:
        await stop.wait()
    finally:
        await notifier.stop()


def main() -> None:
    """Entry point."""
    settings = Settings()
    setup_logging("notifier", settings.log_format, settings.log_level)
    setup_tracing("notifier", settings)
    # One line per connection opened and closed is noise at thousands of connections.
    logging.getLogger("websockets.server").setLevel(logging.WARNING)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
