"""A real Faust worker for tests/integration/test_runtime.py, run as a subprocess.

Copies every message on omboard.events whose value is JSON to omboard.notifications.sent and
dead-letters the rest. Configured by OMBOARD_* variables plus ECHO_WEB_PORT and ECHO_APP_ID.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from faust.types import StreamT

from schemas.topics import EVENTS, NOTIFICATIONS_SENT
from services.runtime.deadletter import dead_letter
from services.runtime.faust_app import create_app
from services.runtime.settings import Settings
from services.runtime.streams import Outgoing, Received, batches, send_all

SERVICE = "notifier"
STARTED = time.monotonic()

app = create_app(SERVICE, Settings(), web_port=int(os.environ["ECHO_WEB_PORT"]), app_id=os.environ["ECHO_APP_ID"])


def echo_or_dead_letter(received: Received) -> Outgoing:
    try:
        json.loads(received.value or b"")
    except ValueError as error:
        return dead_letter(SERVICE, received, f"value is not JSON: {error}")
    return Outgoing(NOTIFICATIONS_SENT, received.key, received.value, received.headers)


@app.agent(app.topic(EVENTS), concurrency=1)
async def echo(stream: StreamT[Any]) -> None:
    async for batch in batches(stream, 500, 0.05):
        await send_all(app, [echo_or_dead_letter(received) for received in batch])


@app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types it too narrowly
async def announce(sender: Any, *args: Any, **kwargs: Any) -> None:
    # The test waits for this line; it is also how long a group join takes on Tansu.
    print(f"ASSIGNED {len(args[0])} partitions after {time.monotonic() - STARTED:.2f}s", flush=True)


if __name__ == "__main__":
    app.main()
