"""How a relayed response is framed for this client (both engines share the rule).

The upstream's head goes out as it came; only the body's framing is this client's:
``Content-Length`` kept, else chunked for HTTP/1.1 or the connection's close for HTTP/1.0;
no body for HEAD, 1xx, 204, 304 (a 304 keeps the ``Content-Length``, the 200's, that
aiohttp would drop); ``Connection: close``/``keep-alive`` when the connection's fate needs
saying.
"""

from __future__ import annotations

from aiohttp.hdrs import CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING
from aiohttp.helpers import must_be_empty_body, should_remove_content_length
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11
from multidict import CIMultiDict

__all__ = ["NOT_MODIFIED", "Framing", "frame_response"]

NOT_MODIFIED = 304


class Framing:
    """What `frame_response` decided: the body's length (None: chunked or until close),
    whether it is chunked, whether there is no body at all, and the connection's fate."""

    __slots__ = ("chunked", "empty", "keep_alive", "length")

    def __init__(self, length: int | None, chunked: bool, empty: bool, keep_alive: bool) -> None:
        self.length = length
        self.chunked = chunked
        self.empty = empty
        self.keep_alive = keep_alive


def frame_response(
    headers: CIMultiDict[str],
    method: str,
    status: int,
    version: HttpVersion,
    keep_alive: bool,
    length: int | None,
) -> Framing:
    """Frame a response to ``method`` with ``status`` for a client speaking ``version``;
    ``headers`` (the upstream's, hop-by-hop removed) get the framing headers added."""
    empty = must_be_empty_body(method, status)
    chunked = False
    if empty:
        # RFC 9110 §8.6: none on 1xx and 204; a 304's (the 200's length) is kept
        if (
            status != NOT_MODIFIED
            and CONTENT_LENGTH in headers
            and should_remove_content_length(method, status)
        ):
            del headers[CONTENT_LENGTH]
        length = None
    elif length is None:
        if version >= HttpVersion11:
            chunked = True
            headers[TRANSFER_ENCODING] = "chunked"
        else:
            keep_alive = False  # the body ends with the connection
    if keep_alive:
        if version == HttpVersion10:
            headers[CONNECTION] = "keep-alive"
    elif version == HttpVersion11:
        headers[CONNECTION] = "close"
    return Framing(length, chunked, empty, keep_alive)
