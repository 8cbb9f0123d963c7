"""Fan-out between server processes: the ``Broker`` interface (``broker.interface``), the
in-process broker (``broker.local``) and Redis pub/sub (``broker.redis_broker``). Used by
collab (documents, project channel), ai (chat, edits) and execution (terminals)."""
