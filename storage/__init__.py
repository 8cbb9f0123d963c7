"""Content-addressed object storage for files larger than text (``files.storage_path``)."""
