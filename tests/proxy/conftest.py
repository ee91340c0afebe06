"""Fixtures of the proxy tests (defined in `tests.support.proxy`)."""

from tests.support.proxy import make_proxy, proxy_engine, raw_upstream

__all__ = ["make_proxy", "proxy_engine", "raw_upstream"]
