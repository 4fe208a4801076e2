#!/usr/bin/env python3
"""The slow target of the mirror benchmark: a TCP proxy that passes what the server sends
DELAY_MS later and what the client sends UP_DELAY_MS later (default 0: at once), each
direction in order (a server far away, not a busy one: its throughput is not limited).

    python3 delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS [UP_DELAY_MS]
"""
import asyncio
import sys
import time


async def pipe(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it was read."""
    if delay <= 0:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
        return
    queue = asyncio.Queue()

    async def sender():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(sender())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, data))
    finally:
        queue.put_nowait((0, None))
        await task


async def handle(client_r, client_w, port, down, up):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, server_w, up), pipe(server_r, client_w, down), return_exceptions=True)


async def main():
    listen, target = int(sys.argv[1]), int(sys.argv[2])
    down = float(sys.argv[3]) / 1000
    up = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0
    server = await asyncio.start_server(lambda r, w: handle(r, w, target, down, up), "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


asyncio.run(main())
