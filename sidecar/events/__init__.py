"""Event-aware metrics of the Causality gateway's ingest routes (design §7).

`EventInspector` is the whole interface the proxy uses; `codec` reads the bodies and
`dedup` remembers idempotency keys.
"""

from sidecar.events.inspector import EventInspector

__all__ = ["EventInspector"]
