#!/usr/bin/env python3
"""The slow target of the mirror benchmark: a TCP proxy that passes what the client sends at
once and what the server sends DELAY_MS later, in order (a server far away, not a busy one:
its throughput is not limited).

    python3 delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS
"""
import asyncio
import sys
import time


async def upstream(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def downstream(reader, writer, delay):
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


async def handle(client_r, client_w, port, delay):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(upstream(client_r, server_w), downstream(server_r, client_w, delay), return_exceptions=True)


async def main():
    listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000
    server = await asyncio.start_server(lambda r, w: handle(r, w, target, delay), "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


asyncio.run(main())
