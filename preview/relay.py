"""Runs INSIDE a preview's sandbox (stdlib only, started by /usr/bin/python3 there).

Accepts on a Unix socket in a directory the server bind-mounts into the sandbox and pipes
each connection to ``127.0.0.1:PORT`` in the sandbox's own network namespace, where the
app listens. The server reaches the app only through that socket: no host port exists
for another sandbox (or anything else on the host) to connect to.

Usage: python3 relay.py SOCKET_PATH PORT
"""

import asyncio
import contextlib
import os
import sys

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()


async def _serve(port: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        app_r, app_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        # Not listening (yet): the server sees a closed connection and answers 502/503.
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, app_w), _pipe(app_r, client_w))
    finally:
        for writer in (app_w, client_w):
            with contextlib.suppress(OSError):
                writer.close()


async def main(path: str, port: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(lambda r, w: _serve(port, r, w), path=path)
    os.chmod(path, 0o600)  # the server (root, or the same uid) connects; nobody else
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
