"""An incremental Server-Sent Events decoder (WHATWG rules) that accepts bytes split anywhere.

Lines end in CRLF, LF or CR. A chunk may end between `\\r` and `\\n`, or inside a multi-byte UTF-8
character: lines are cut at the byte level (`\\r` and `\\n` never occur inside a UTF-8 sequence) and
decoded only once complete, and a trailing `\\r` is held back until the next byte shows whether a
`\\n` follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass
class SSEMessage:
    event: str | None
    data: str
    id: str | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._at_start = True
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._last_id: str | None = None
        self.comments = 0  # comment lines seen (llama-server's keep-alive pings are comments)

    def feed(self, data: bytes) -> list[SSEMessage]:
        if not data:
            return []
        buffer = self._buffer + data if self._buffer else data
        if self._at_start:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            self._at_start = False
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        messages: list[SSEMessage] = []
        start = 0
        end = len(buffer)
        for match in _EOL.finditer(buffer):
            if match.end() == end and buffer[-1:] == b"\r":
                break  # a "\n" may still follow in the next chunk
            self._line(buffer[start : match.start()], messages)
            start = match.end()
        self._buffer = buffer[start:]
        return messages

    def flush(self) -> list[SSEMessage]:
        """End of stream: take the unterminated last line, and dispatch a pending message.

        (The spec drops an event not followed by a blank line; upstreams that end without one
        still mean it, so it is dispatched.)"""
        messages: list[SSEMessage] = []
        rest, self._buffer = self._buffer, b""
        if self._at_start and _BOM.startswith(rest):
            rest = b""
        if rest.endswith(b"\r"):
            rest = rest[:-1]
        if rest:
            self._line(rest, messages)
        self._dispatch(messages)
        return messages

    def _line(self, raw: bytes, messages: list[SSEMessage]) -> None:
        if not raw:
            self._dispatch(messages)
            return
        line = raw.decode("utf-8", "replace")
        if line[0] == ":":
            self.comments += 1
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        # "retry" and unknown fields are ignored

    def _dispatch(self, messages: list[SSEMessage]) -> None:
        if self._id is not None:
            self._last_id = self._id
            self._id = None
        if self._data:
            messages.append(SSEMessage(self._event or None, "\n".join(self._data), self._last_id))
        self._data = []
        self._event = None
