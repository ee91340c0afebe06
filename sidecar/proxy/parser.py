"""Length overflow checks that aiohttp's pure-Python request parser lacks.

aiohttp parses with llhttp (its C extension) when it is built, and with a pure-Python
parser under ``AIOHTTP_NO_EXTENSIONS=1`` or where the extension is missing. llhttp refuses
a ``Content-Length`` or a chunk size that does not fit in 64 bits; the Python parser
takes any number of digits (Python integers do not overflow), so before this module:

- ``Content-Length: 99999999999999999999999999`` was accepted and the request forwarded
  with that length (the proxy answered whatever the app said, 200);
- a chunk size of ``fffffffffffffffffffffff`` made the rest of the connection, including
  a pipelined request behind it, the data of one endless chunk, and the head reached the
  app.

`StrictRequestParserPy` refuses both as llhttp does (400 through the handler's
``handle_error``). The bound is 2**63 - 1 bytes, nginx's (``NGX_MAX_OFF_T_VALUE``), for
both. The connection handler swaps it in only when the pure-Python parser is the one in
use (one check per connection; the C path is untouched).
"""

from __future__ import annotations

from aiohttp.http_exceptions import BadHttpMessage, TransferEncodingError
from aiohttp.http_parser import HttpRequestParserPy, RawRequestMessage
from aiohttp.streams import StreamReader

__all__ = ["MAX_LENGTH", "StrictRequestParserPy", "strict_request_parser"]

MAX_LENGTH = 2**63 - 1
MAX_LENGTH_DIGITS = len(str(MAX_LENGTH))  # also keeps int() under Python's digit limit


class StrictRequestParserPy(HttpRequestParserPy):
    """The pure-Python request parser, refusing lengths and chunk sizes past `MAX_LENGTH`."""

    def parse_message(self, lines: list[bytes]) -> RawRequestMessage:
        """Parse a head; a ``Content-Length`` of more than `MAX_LENGTH` is a bad request.

        Only all-digit values are checked here; the parser refuses any other form itself.
        """
        message = super().parse_message(lines)
        value = message.headers.get("Content-Length")
        if value is not None and _overflows(value):
            raise BadHttpMessage("Content-Length overflow")
        return message

    def feed_data(
        self, data: bytes, *args: object, **kwargs: object
    ) -> tuple[list[tuple[RawRequestMessage, StreamReader]], bool, bytes]:
        """Parse; a chunk with more than `MAX_LENGTH` bytes still to come is refused.

        Checked after each read on what remains of the current chunk (the parser keeps the
        remainder, not the size it read), so a size less than one read above the bound
        passes; its bytes then go upstream in the proxy's own chunk framing, as data. A head
        and an overflowing chunk-size line in one read are refused together, before the
        request is handed on, as llhttp does.
        """
        result = super().feed_data(data, *args, **kwargs)  # type: ignore[arg-type]
        payload = self._payload_parser
        if payload is not None and payload._chunk_size > MAX_LENGTH:
            exc = TransferEncodingError("chunk size overflow")
            reported: BaseException = exc
            if self.payload_exception is not None:
                reported = self.payload_exception(str(exc))
            payload.payload.set_exception(reported, exc)
            raise exc
        return result


def _overflows(value: str) -> bool:
    """An all-digit length above `MAX_LENGTH` (other forms are the parser's to refuse)."""
    if not (value.isascii() and value.isdigit()):
        return False
    return len(value) > MAX_LENGTH_DIGITS or int(value) > MAX_LENGTH


def strict_request_parser(parser: HttpRequestParserPy) -> StrictRequestParserPy:
    """A `StrictRequestParserPy` with the settings of a fresh pure-Python ``parser``."""
    return StrictRequestParserPy(
        parser.protocol,
        parser.loop,
        parser._limit,
        max_line_size=parser.max_line_size,
        max_headers=parser.max_headers,
        max_field_size=parser.max_field_size,
        timer=parser.timer,
        payload_exception=parser.payload_exception,
        auto_decompress=parser._auto_decompress,
        max_msg_queue_size=parser._max_msg_queue_size,
    )
