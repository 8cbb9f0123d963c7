"""One abstraction for every socket kind (documents, project channel, chat, terminals).

- ``sockets.close_codes``: the close codes, defined once.
- ``sockets.outbox``: the sending side, bounded by bytes, non-blocking, closed with a code
  (direct to the transport under our uvicorn protocol, else a queue and a writer).
- ``sockets.receive``: the one receive loop.
"""
