"""CSV cells that a spreadsheet shows as text and never runs (OWASP "CSV injection").

Excel, LibreOffice and Google Sheets treat a cell starting with `=`, `+`, `-`, `@`, a tab or a
carriage return as a formula (`=HYPERLINK(...)`, `@SUM(...)`, `+cmd|...`). Every file we write
for people to open (the export's manifest.csv, a model version's snapshot) passes its text cells
through `csv_cell`, which puts a `'` before such a cell; numbers (ours, or text that is just a
number such as `-3.5`) stay as they are. A cell that already starts with `'` gets one more, so
`csv_cell_read` gives back exactly what was written (the snapshot is read back by the drill-down).
"""

import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value.startswith("'") or (value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value)):
        return "'" + value
    return value


def csv_row(values) -> list:
    return [csv_cell(v) for v in values]


def csv_cell_read(value: str) -> str:
    """The value `csv_cell` was given."""
    return value[1:] if value.startswith("'") else value
