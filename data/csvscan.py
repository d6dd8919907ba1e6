"""Split a CSV export into records before pandas parses it, and say which physical lines are
bad, with the encoding and delimiter found (the vectorized quote-parity scan: docs/design/data.md).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DELIMITERS", "BadLine", "CsvChunk", "CsvScanner", "detect_encoding", "field_spans"]

#: Delimiters the sniffer chooses from, most usual first.
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
#: Bytes scanned at a time.
BLOCK_BYTES = 4 << 20
#: An unfinished quoted record longer than this is taken as a quote that runs on.
_RUNAWAY_BYTES = 1 << 20
_NL = 10
_CR = 13


@dataclass(frozen=True)
class BadLine:
    """One line that could not be read as a record of the table."""

    #: Physical line number in the file, 1-based (the header is line 1).
    line: int
    #: The column at fault (the first missing one, the one whose quote runs on), None
    #: when the whole line is at fault.
    column: str | None
    message: str
    #: The line as it is in the file (without its line break), at most 500 characters.
    text: str


@dataclass
class CsvChunk:
    """Good records of one block, ready for ``pandas.read_csv``."""

    #: UTF-8 CSV text: the header line, then the good records.
    data: bytes
    #: Physical line number (1-based, int64) where each good record starts.
    lines: np.ndarray
    #: Lines of this block that were rejected.
    bad: list[BadLine] = field(default_factory=list)


def detect_encoding(path: Path, block: int = BLOCK_BYTES) -> tuple[str, str | None]:
    """The file's text encoding (a Python codec name) and, when it is not plain UTF-8, a
    sentence saying so (None for UTF-8 without a byte-order mark).
    """
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", f"{path.name}: read as UTF-16 (byte-order mark)"
        enc = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
        fh.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        try:
            while chunk := fh.read(block):
                # Plain ASCII (most exports) is UTF-8 without decoding it.
                if np.frombuffer(chunk, dtype=np.uint8).max() >= 0x80 or decoder.getstate()[0]:
                    decoder.decode(chunk)
                offset += len(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            where = offset + exc.start
            try:
                path.read_bytes().decode("cp1252")
                enc = "cp1252"
            except UnicodeDecodeError:
                enc = "latin-1"
            label = "Windows-1252" if enc == "cp1252" else "Latin-1"
            return enc, (
                f"{path.name}: not UTF-8 (byte {where:,} is not valid UTF-8); read as {label}"
            )
    return enc, None


def _sniff(lines: list[str]) -> str:
    """The delimiter that splits the first lines into the same, largest number of fields."""
    best, best_score = ",", (-1, -1)
    for delim in DELIMITERS:
        counts = [len(r) for r in csv.reader(lines, delimiter=delim)]
        if not counts or counts[0] < 2:
            continue
        consistent = sum(c == counts[0] for c in counts)
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = delim, score
    return best


def field_spans(text: str, delim: str) -> list[tuple[int, int]]:
    """Where each field of a CSV line is, as (start, end), fields read as RFC 4180 has
    them; a quoted field that is never closed, or whose closing quote is followed by
    something other than the delimiter (``"Acme, Inc,414,"$36"``), runs to the end of
    the line (one span): it is the last span."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            j = i + 1
            while True:
                k = text.find('"', j)
                if k < 0:
                    return [*spans, (i, n)]
                if text.startswith('""', k):
                    j = k + 2
                    continue
                break
            end = k + 1
            if end < n and text[end] != delim:
                return [*spans, (i, n)]
            spans.append((i, end))
            if end >= n:
                return spans
            i = end + 1
        else:
            k = text.find(delim, i)
            if k < 0:
                return [*spans, (i, n)]
            spans.append((i, k))
            i = k + 1


class CsvScanner:
    """Reads a CSV file's header and then its records, ``block_bytes`` at a time.

    It exposes ``encoding`` (``encoding_note`` when not plain UTF-8), ``delimiter``
    (sniffed), ``header`` (names stripped), ``header_line`` (after blank
    lines) and ``n_records`` (records seen so far, good and bad; blank lines are not).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.encoding, self.encoding_note = detect_encoding(self.path)
        self.block_bytes = BLOCK_BYTES
        self.n_records = 0
        with self.path.open(encoding=self.encoding, newline="") as fh:
            first: list[str] = []
            skipped = 0
            for raw in fh:
                if not first and not raw.strip():
                    skipped += 1
                    continue
                first.append(raw.rstrip("\r\n"))
                if len(first) >= 20:
                    break
        if not first:
            raise ValueError(f"{self.name}: the file is empty (no header row)")
        self.delimiter = _sniff(first)
        self.header = [h.strip() for h in next(csv.reader([first[0]], delimiter=self.delimiter))]
        self.header_line = skipped + 1
        self.n_fields = len(self.header)
        self._sep = ord(self.delimiter)
        #: The header re-written as one UTF-8 CSV line (each block of rows is parsed after it).
        self.header_bytes = self._csv_line(self.header).encode("utf-8")

    def _csv_line(self, fields: list[str]) -> str:
        out = io.StringIO()
        csv.writer(out, delimiter=self.delimiter, lineterminator="\n").writerow(fields)
        return out.getvalue()

    # ------------------------------------------------------------------ text blocks

    def _text_blocks(self) -> Iterator[bytes]:
        """The file after the header as UTF-8 bytes, in blocks that end at a line break."""
        utf8 = self.encoding in ("utf-8", "utf-8-sig")
        decode = None if utf8 else codecs.getincrementaldecoder(self.encoding)()
        with self.path.open("rb") as fh:
            rest = b""
            while True:
                raw = fh.read(self.block_bytes)
                final = not raw
                if decode is not None:
                    raw = decode.decode(raw, final=final).encode("utf-8")
                buf = rest + raw
                if final:
                    if buf:
                        yield buf
                    return
                cut = buf.rfind(b"\n")
                if cut < 0:
                    rest = buf
                    continue
                yield buf[: cut + 1]
                rest = buf[cut + 1 :]

    def chunks(self) -> Iterator[CsvChunk]:
        """Good records block by block, with the bad lines of each block."""
        pending = b""
        line = 1  # physical line number of pending's first byte
        skip_header = True
        bom = self.encoding == "utf-8-sig"
        for block in self._text_blocks():
            if bom:
                block = block.removeprefix(codecs.BOM_UTF8)
                bom = False
            buf = pending + block
            if skip_header:
                # Drop blank lines and the header line itself.
                lines = buf.split(b"\n", self.header_line)
                buf = lines[-1] if len(lines) > self.header_line else b""
                line = self.header_line + 1
                skip_header = False
            chunk, pending, line = self._scan(buf, line, final=False)
            if len(chunk.lines) or chunk.bad:
                yield chunk
        if pending:
            chunk, rest, _ = self._scan(pending, line, final=True)
            assert not rest
            if len(chunk.lines) or chunk.bad:
                yield chunk

    # ------------------------------------------------------------------ scanning

    def _scan(self, buf: bytes, line: int, *, final: bool) -> tuple[CsvChunk, bytes, int]:
        """Split ``buf`` (starting at physical ``line``) into records.

        Returns the chunk of good records and bad lines, the unfinished tail to
        carry into the next block, and the physical line of that tail.
        One loop on purpose: its steps share the aligned arrays of one pass (record
        starts, ends, field counts, first lines); what stands alone (a bad line, a
        runaway quote, a merged record) is its own method.
        """
        parts: list[bytes] = [self.header_bytes]
        lines: list[np.ndarray] = []
        bad: list[BadLine] = []
        while buf:
            arr = np.frombuffer(buf, dtype=np.uint8)
            # Quote parity only where it matters (line breaks and delimiters): the
            # number of quotes before a byte, by binary search in the quotes' positions
            # (an export has far fewer quotes than bytes; none at all is common).
            qpos = np.flatnonzero(arr == 34)
            nl_all = np.flatnonzero(arr == _NL)
            delims = np.flatnonzero(arr == self._sep)
            if len(qpos):
                ends = nl_all[(np.searchsorted(qpos, nl_all) & 1) == 0]
                delims = delims[(np.searchsorted(qpos, delims) & 1) == 0]
            else:
                ends = nl_all
            odd_quotes = bool(len(qpos) & 1)
            tail_open = final and (len(ends) == 0 or ends[-1] != len(arr) - 1)
            if tail_open:
                ends = np.append(ends, len(arr))  # the last record, unfinished
            if not len(ends):
                if len(buf) > _RUNAWAY_BYTES:
                    buf, line = self._runaway(buf, line, bad)
                    continue
                break
            starts = np.concatenate(([0], ends[:-1] + 1))
            counts = np.searchsorted(delims, ends) - np.searchsorted(delims, starts) + 1
            first_line = np.searchsorted(nl_all, starts) + line
            # Line breaks inside a record: a quoted field that spans lines.
            spans = np.searchsorted(nl_all, ends) - np.searchsorted(nl_all, starts)
            length = ends - starts
            blank = (length == 0) | ((length == 1) & (arr[np.minimum(starts, len(arr) - 1)] == _CR))
            wrong = (counts != self.n_fields) & ~blank
            multi = (spans > 0) & ~blank
            suspect = np.flatnonzero(multi)
            stop = len(ends)  # records handled in this pass
            for i in suspect.tolist():
                if wrong[i] or self._looks_merged(buf[starts[i] : ends[i]]):
                    stop = i
                    break
            if tail_open and stop == len(ends) and (multi[-1] or odd_quotes):
                stop = len(ends) - 1  # an unterminated quote at the end of the file
            if stop:
                # Good records are copied in runs; a wrong one between runs is re-read alone.
                pos = 0
                picked = np.zeros(stop, dtype=bool)
                for i in np.flatnonzero(wrong[:stop]).tolist():
                    parts.append(buf[pos : starts[i]])
                    rec = self._one_line(buf[starts[i] : ends[i]], int(first_line[i]), bad)
                    if rec is not None:
                        parts.append(rec)
                        picked[i] = True
                    pos = int(ends[i]) + 1
                parts.append(buf[pos : ends[stop - 1] + 1])
                keep = (~blank[:stop] & ~wrong[:stop]) | picked
                lines.append(first_line[:stop][keep])
            self.n_records += int((~blank[:stop]).sum())
            if stop == len(ends):
                done = int(ends[-1]) + 1 if not tail_open else len(buf)
                line = int(line + np.searchsorted(nl_all, done))
                buf = buf[done:]
                if not tail_open:
                    break
                continue
            # A record that spans lines and is not a record: its first line is bad.
            start = int(starts[stop])
            line = int(first_line[stop])
            buf, line = self._runaway(buf[start:], line, bad)
        data = b"".join(parts)
        rows = np.concatenate(lines) if lines else np.empty(0, dtype=np.int64)
        bad.sort(key=lambda b: b.line)
        return CsvChunk(data, rows.astype(np.int64), bad), buf, line

    def _looks_merged(self, record: bytes) -> bool:
        """A continuation line of a multi-line record that looks like a record of its own."""
        need = max(self.n_fields - 1, 1)
        return any(
            piece.count(self._sep) >= need and self.n_fields > 2
            for piece in record.split(b"\n")[1:]
        )

    def _runaway(self, buf: bytes, line: int, bad: list[BadLine]) -> tuple[bytes, int]:
        """Reject the first line of ``buf`` (a quote that runs on); return the rest."""
        cut = buf.find(b"\n")
        first = buf if cut < 0 else buf[:cut]
        text = first.decode("utf-8", errors="replace").rstrip("\r")
        field_index = len(field_spans(text, self.delimiter)) - 1
        column = self.header[min(field_index, self.n_fields - 1)]
        bad.append(
            BadLine(
                line,
                column,
                "unterminated quote: the quoted text runs on past the end of the line "
                "(the line was rejected, not merged with the next one)",
                text[:500],
            )
        )
        self.n_records += 1
        return (b"" if cut < 0 else buf[cut + 1 :]), line + 1

    def _one_line(self, record: bytes, line: int, bad: list[BadLine]) -> bytes | None:
        """A one-line record whose field count is off: re-read it as Python's csv does.

        Returns it re-written as a clean CSV line when it has the header's number of
        fields after all (a quote inside an unquoted field); otherwise records why
        it is bad and returns None.
        """
        text = record.decode("utf-8", errors="replace").rstrip("\r")
        fields = next(csv.reader([text], delimiter=self.delimiter), [])
        n = len(fields)
        if n == self.n_fields and "\n" not in (clean := self._csv_line(fields))[:-1]:
            return clean.encode("utf-8")
        message = f"expected {self.n_fields} fields, found {n}: "
        if n > self.n_fields:
            message += f"{n - self.n_fields} more than the header (after its last column)"
            column: str | None = self.header[-1]
        else:
            column = self.header[n] if n < self.n_fields else None
            message += (
                "the line ends before this column "
                "(the line was rejected, not padded with empty values)"
            )
        bad.append(BadLine(line, column, message, text[:500]))
        return None
