"""How every export writes its cells, to CSV or XLSX, whether streamed to the client or written by an
export job into a file.

CSV is RFC 4180 (CRLF, minimal quoting), UTF-8 without BOM; times are RFC 3339 in UTC with `Z` by default,
or `YYYY-MM-DD HH:MM:SS` (UTC) with the SPREADSHEET date format for tools that do not read `Z`; a text
cell starting with = + - @ gets a leading ' (formula-injection guard). XLSX cells are typed: text as
strings (never formulas), times as date-time cells with a date format, percentages as numbers with a
0.00 format, counts and ids as numbers; column widths are set, the header row is frozen and filtered.
XlsxWriter runs in constant-memory mode (one row held at a time): the workbook is whole only at close().
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import xlsxwriter

MAX_SHEET_ROWS = 1_048_576
RFC3339 = "RFC3339"
SPREADSHEET = "SPREADSHEET"
DATE_FORMATS = (RFC3339, SPREADSHEET)

Cells = Sequence[Any]


class TooManyRows(Exception):
    pass


@dataclass(frozen=True)
class Column:
    """A report column: its header, the kind of its cells (text, int, number, percent, datetime) and its
    width in the XLSX (characters)."""

    name: str
    kind: str = "text"
    width: float = 14


# --- cells ---------------------------------------------------------------------------------------------


def guard(text: str) -> str:
    """Spreadsheets run a cell starting with = + - @ as a formula: make it text."""
    return "'" + text if text and text[0] in "=+-@" else text


def naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def iso(value: datetime) -> str:
    """RFC 3339 in UTC with Z; stored times are UTC (naive ones read back from SQLite too)."""
    if value.tzinfo is UTC:
        return value.isoformat(timespec="seconds")[:-6] + "Z"
    return naive_utc(value).isoformat(timespec="seconds") + "Z"


def spreadsheet_time(value: datetime) -> str:
    """YYYY-MM-DD HH:MM:SS in UTC: what spreadsheets read as a date-time without being told the format."""
    return naive_utc(value).isoformat(sep=" ", timespec="seconds")


def time_formatter(date_format: str) -> Callable[[datetime], str]:
    return spreadsheet_time if date_format == SPREADSHEET else iso


def csv_cell(value: Any, when: Callable[[datetime], str] = iso) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return guard(value)
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


# --- CSV ---------------------------------------------------------------------------------------------


def csv_header(columns: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(columns)
    return buffer.getvalue().encode()


class CsvBlocks:
    """Encodes chunks of rows as CSV blocks (cells formatted by csv_cell unless `preformatted`)."""

    def __init__(self, date_format: str = RFC3339, preformatted: bool = False) -> None:
        self.when = time_formatter(date_format)
        self.preformatted = preformatted
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")

    def __call__(self, rows: Sequence[Cells]) -> bytes:
        buffer, when = self.buffer, self.when
        buffer.seek(0)
        buffer.truncate()
        self.writer.writerows(rows if self.preformatted else ([csv_cell(v, when) for v in row] for row in rows))
        return buffer.getvalue().encode()


async def csv_lines(
    columns: Sequence[str], chunks: AsyncIterator[Sequence[Cells]], preformatted: bool = False,
    date_format: str = RFC3339,
) -> AsyncIterator[bytes]:
    """The header, then one encoded block per chunk of rows."""
    yield csv_header(columns)
    blocks = CsvBlocks(date_format, preformatted)
    async for rows in chunks:
        yield blocks(rows)


# --- XLSX ---------------------------------------------------------------------------------------------

DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
PERCENT_FORMAT = "0.00"


class Sheet:
    """One worksheet in a constant-memory workbook at `path`: a bold header row, frozen and filtered,
    column widths set, and typed cells."""

    def __init__(self, path: str, sheet: str, columns: Sequence[Column | str]) -> None:
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "remove_timezone": True})
        self.worksheet = self.workbook.add_worksheet(sheet)
        self.when = self.workbook.add_format({"num_format": DATETIME_FORMAT})
        self.percent = self.workbook.add_format({"num_format": PERCENT_FORMAT})
        bold = self.workbook.add_format({"bold": True})
        for index, column in enumerate(self.columns):
            self.worksheet.set_column(index, index, max(column.width, len(column.name) + 2))
        self.worksheet.freeze_panes(1, 0)
        self.worksheet.write_row(0, 0, [c.name for c in self.columns], bold)
        self.percent_columns = frozenset(i for i, c in enumerate(self.columns) if c.kind == "percent")
        self.line = 0

    def write(self, rows: Sequence[Cells]) -> None:
        sheet, when, percent, percents = self.worksheet, self.when, self.percent, self.percent_columns
        for row in rows:
            self.line += 1
            if self.line >= MAX_SHEET_ROWS:
                raise TooManyRows
            for column, value in enumerate(row):
                if value is None or value == "":
                    continue
                if isinstance(value, str):
                    sheet.write_string(self.line, column, value)
                elif isinstance(value, datetime):
                    sheet.write_datetime(self.line, column, naive_utc(value), when)
                elif isinstance(value, bool):
                    sheet.write_boolean(self.line, column, value)
                elif column in percents:
                    sheet.write_number(self.line, column, value, percent)
                else:
                    sheet.write_number(self.line, column, value)

    def close(self) -> None:
        self.worksheet.autofilter(0, 0, self.line, len(self.columns) - 1)
        self.workbook.close()


class CrlfLines:
    """PostgreSQL's COPY ends each row with LF; RFC 4180, and the Python path, end them with CRLF. An LF inside
    a quoted field (a name with a line break) stays as it is: a byte is inside quotes when an odd number of
    quote characters precede it in the stream (a doubled quote inside a field counts twice), so the state
    carried from one block to the next is that parity. `rows` counts the line ends outside quotes."""

    def __init__(self) -> None:
        self.quoted = False
        self.rows = 0

    def __call__(self, block: bytes | bytearray) -> bytes:
        if b'"' not in block:
            if self.quoted:
                return bytes(block)
            self.rows += block.count(b"\n")
            return bytes(block.replace(b"\n", b"\r\n"))
        pieces = bytes(block).split(b'"')
        outside = 1 if self.quoted else 0
        self.rows += sum(piece.count(b"\n") for piece in pieces[outside::2])
        pieces[outside::2] = [piece.replace(b"\n", b"\r\n") for piece in pieces[outside::2]]
        if len(pieces) % 2 == 0:  # an odd number of quotes
            self.quoted = not self.quoted
        return b'"'.join(pieces)
