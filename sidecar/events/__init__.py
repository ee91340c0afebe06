"""Event-aware metrics of the Causality gateway's ingest routes (design §7).

`EventInspector` is the whole interface the proxy uses; `scan` reads batch bodies and
remembers idempotency keys in C (`_scan.c`), `codec` is the exact decoder behind it.
"""

from sidecar.events.inspector import EventInspector

__all__ = ["EventInspector"]
