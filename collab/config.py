"""Limits and timings of the document hub."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class CollabConfig:
    max_message_bytes: int = 8 * 1024 * 1024
    max_document_bytes: int = 32 * 1024 * 1024
    keepalive_s: float = 20.0
    # A socket whose unsent backlog exceeds this when another frame is due is a slow
    # consumer (closed with 1013); one frame larger than this still goes to a drained socket.
    send_buffer_bytes: int = 4 * 1024 * 1024
    log_flush_ms: int = 50
    compact_after_s: float = 5.0
    version_bucket_s: float = 300.0
    idle_unload_s: float = 30.0
    gap_repair_s: float = 5.0
    role_check_s: float = 0.5
    # The membership path's fallback (server/membership.py): every socket's role re-read
    # this often, for changes whose broker message was lost.
    membership_fallback_s: float = 5.0
    viewer_awareness: bool = True  # False: viewers' cursors are dropped too
    # Awareness renewals (an unchanged state re-sent every 15 s) wait at most this long to
    # go out together, one frame per room (collab/awareness.py); 0 relays each at once.
    # Peers drop a state not renewed for 30 s: renewal period (15-18 s) + this < 30.
    awareness_renewal_delay_s: float = 5.0
    # permessage-deflate for messages of at least this many bytes (0: not offered); small
    # frames (keystrokes) always go out raw (sockets/deflate.py).
    deflate_min_bytes: int = 64 * 1024
    # A fresh joiner of a document at least this large gets the shared, once-encoded (and
    # once-compressed) full state, kept this long after its last use (collab/full_sync.py).
    shared_sync_min_bytes: int = 256 * 1024
    shared_sync_keep_s: float = 30.0
    deflate_level: int = 6

    def __post_init__(self) -> None:
        if not 0 <= self.awareness_renewal_delay_s <= 10:
            raise ValueError("DOC_AWARENESS_RENEWAL_DELAY_S must be between 0 and 10 seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CollabConfig:
        d = cls()
        return cls(
            max_message_bytes=int(env.get("WS_MAX_MESSAGE_BYTES", d.max_message_bytes)),
            max_document_bytes=int(env.get("MAX_DOCUMENT_BYTES", d.max_document_bytes)),
            keepalive_s=float(env.get("WS_KEEPALIVE_S", d.keepalive_s)),
            send_buffer_bytes=int(env.get("WS_SEND_BUFFER_BYTES", d.send_buffer_bytes)),
            log_flush_ms=int(env.get("DOC_LOG_FLUSH_MS", d.log_flush_ms)),
            compact_after_s=float(env.get("DOC_COMPACT_AFTER_S", d.compact_after_s)),
            version_bucket_s=float(env.get("DOC_VERSION_BUCKET_S", d.version_bucket_s)),
            idle_unload_s=float(env.get("DOC_IDLE_UNLOAD_S", d.idle_unload_s)),
            gap_repair_s=float(env.get("GAP_REPAIR_S", d.gap_repair_s)),
            role_check_s=float(env.get("DOC_ROLE_CHECK_S", d.role_check_s)),
            membership_fallback_s=float(
                env.get("MEMBERSHIP_FALLBACK_S", d.membership_fallback_s)
            ),
            deflate_min_bytes=int(env.get("WS_DEFLATE_MIN_BYTES", d.deflate_min_bytes)),
            shared_sync_min_bytes=int(
                env.get("DOC_SHARED_SYNC_MIN_BYTES", d.shared_sync_min_bytes)
            ),
            shared_sync_keep_s=float(env.get("DOC_SHARED_SYNC_KEEP_S", d.shared_sync_keep_s)),
            deflate_level=int(env.get("WS_DEFLATE_LEVEL", d.deflate_level)),
            awareness_renewal_delay_s=float(
                env.get("DOC_AWARENESS_RENEWAL_DELAY_S", d.awareness_renewal_delay_s)
            ),
            viewer_awareness=env.get("DOC_VIEWER_AWARENESS", "1").lower() in {"1", "true", "yes"},
        )
