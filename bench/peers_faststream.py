"""FastStream's consumer for ``peers.py``: run by the interpreter of FastStream's own venv.

``StreamSub`` in a consumer group, per message (one ``XADD`` and one ``XACK``
each) or with ``batch=True`` (the batch's ``XADD``s in one pipeline, one
``XACK`` for the batch after the handler returns). Both read
``XREADGROUP COUNT 100`` like the raw loop. Per message, FastStream takes an
entry's ``data`` field as the message body and hands the handler it decoded;
a batch's items are the entries' fields, and the handler decodes ``data``. The
output goes out through ``broker.publish``, in FastStream's own format. Its
access log is off (two lines per message otherwise), as printery runs at
``LOG_LEVEL=error``. Runs until SIGTERM.

    <venv>/bin/python bench/peers_faststream.py URL STREAM OUT per-message|batch
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import Pipeline

from bench.peer_job import event_for


async def main(url: str, stream: str, out: str, mode: str) -> None:
    broker = RedisBroker(url, logger=None)  # no access log: printery runs at LOG_LEVEL=error
    if mode == "batch":

        @broker.subscriber(
            stream=StreamSub(stream, group="g", consumer="c", batch=True, max_records=100)
        )
        async def handle_batch(entries: list[dict[str, Any]], pipe: Pipeline) -> None:
            for fields in entries:  # a batch's items are the entries' fields, ``data`` still text
                event = event_for(json.loads(fields["data"]))
                await broker.publish(event, stream=out, pipeline=pipe)
            await pipe.execute()

    else:

        @broker.subscriber(stream=StreamSub(stream, group="g", consumer="c", max_records=100))
        async def handle(body: dict[str, Any]) -> None:
            await broker.publish(event_for(body), stream=out)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with broker:
        await broker.start()
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
