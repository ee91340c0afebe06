"""Types of the C extension `sidecar/ingest/_pblabels.c` (see its header comment)."""

def encode(text: str, /) -> bytes | None:
    """``labels_bytes(parse_labels(text))`` for label text as the store writes it without
    escapes; None for anything else (the Python side decides)."""
