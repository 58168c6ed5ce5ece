"""A JSON object read piece by piece: the items of its big top-level lists one at a time, in bounded memory.

``json.load`` of a COCO-size annotation file (~450 MB) builds ~2 GB of Python objects before the first one can
be looked at. :func:`top_level` instead reads the file in chunks and yields ``(key, value)`` for each top-level
key, except that the value of a key in ``stream`` (a list) is yielded as ``(key, ListItems)``: an iterator over
its items, each decoded by the standard library's C scanner (``json.JSONDecoder.raw_decode``) when reached. So
at most one chunk and one item are held beyond what the caller keeps. An item may be as large as the file.

Malformed JSON raises ``ValueError`` naming the file and the character offset.
"""
from __future__ import annotations

import json
from typing import IO, Any, Iterable, Iterator, Tuple

CHUNK = 1 << 22  # characters read at a time
_WHITESPACE = " \t\n\r"


class _Reader:
    """A window on a text file: ``buffer[pos:]`` not yet consumed, refilled on demand."""

    def __init__(self, handle: IO[str], name: str):
        self.handle, self.name = handle, name
        self.buffer, self.pos, self.offset, self.eof = "", 0, 0, False
        self._decoder = json.JSONDecoder()

    def _fill(self, size: int = CHUNK) -> bool:
        """Appends ``size`` more characters (dropping what was consumed); False at end of file."""
        if self.eof:
            return False
        chunk = self.handle.read(size)
        if not chunk:
            self.eof = True
            return False
        self.offset += self.pos
        self.buffer, self.pos = self.buffer[self.pos:] + chunk, 0
        return True

    def error(self, what: str) -> ValueError:
        return ValueError(f"{self.name} is not valid JSON: {what} at character {self.offset + self.pos}")

    def peek(self) -> str:
        """The next non-whitespace character ('' at end of file), not consumed."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buffer) or not self._fill():
                return self.buffer[self.pos:self.pos + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def closes(self, close: str, what: str) -> bool:
        """Consumes the separator after a list item or object value: True at ``close``, False at ','."""
        char = self.peek()
        if char == close:
            self.pos += 1
            return True
        if char != ",":
            raise self.error(f"expected ',' or {close!r} {what}")
        self.pos += 1
        return False

    def value(self) -> Any:
        """The next JSON value, decoded whole."""
        self.peek()
        size = CHUNK
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as err:
                if self._fill(size):  # the value may continue: read more (doubling, so a huge value costs O(n))
                    size *= 2
                    continue
                raise self.error(err.msg) from None
            # A number or literal ending exactly at the buffer's end may continue in the next chunk.
            if end == len(self.buffer) and self._fill(size):
                continue
            self.pos = end
            return value


class ListItems:
    """The items of one top-level list, decoded one at a time (iterate it once, before the next key)."""

    def __init__(self, reader: _Reader):
        self._items = self._decode(reader)

    def __iter__(self) -> Iterator[Any]:
        return self._items

    @staticmethod
    def _decode(reader: _Reader) -> Iterator[Any]:
        reader.expect("[")
        if reader.peek() == "]":
            reader.pos += 1
            return
        while True:
            yield reader.value()
            if reader.closes("]", "in a list"):
                return


def top_level(handle: IO[str], name: str, stream: Iterable[str] = ()) -> Iterator[Tuple[str, Any]]:
    """``(key, value)`` of each top-level key of the JSON object in ``handle``; for a key in ``stream`` whose
    value is a list, ``value`` is a :class:`ListItems` that must be consumed before the next pair is asked for.

    Raises:
      ValueError: not a JSON object, or malformed (names ``name`` and the offset).
    """
    reader, stream = _Reader(handle, name), set(stream)
    reader.expect("{")
    if reader.peek() == "}":
        return
    while True:
        key = reader.value()
        if not isinstance(key, str):
            raise reader.error("expected a key")
        reader.expect(":")
        if key in stream and reader.peek() == "[":
            items = ListItems(reader)
            yield key, items
            for _ in items:  # whatever the caller did not consume
                pass
        else:
            yield key, reader.value()
        if reader.closes("}", "after a value"):
            break
    if reader.peek():
        raise reader.error("extra data after the object")
