"""Stock pycrdt-websocket, in memory, on uvicorn (the room name is the URL path).

    python bench/peers/pycrdt_websocket_server.py PORT [--no-deflate]

uvicorn negotiates permessage-deflate when the client offers it (its default), as a stock
deployment would; ``--no-deflate`` turns that off for the comparison.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer


async def serve(port: int, deflate: bool) -> None:
    websocket_server = WebsocketServer()
    app = ASGIServer(websocket_server)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws_per_message_deflate=deflate,
    )
    async with websocket_server:
        await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--no-deflate", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, not args.no_deflate))


if __name__ == "__main__":
    main()
