"""Reading ids out of query strings and URL segments, the one way every view does it."""

# The largest id any backend stores (a signed 64-bit integer): a bigger number names nothing,
# and SQLite raises OverflowError on it instead of matching no row.
LARGEST_ID = 2**63 - 1


def id_param(raw: str | None) -> int | None:
    """The id a query-string value or path segment names, or None when it names none.

    Only ASCII digits count: `"²".isdigit()` is True but `int("²")` raises, and `int("١٢")` parses
    to 12, an id nobody typed. Surrounding blanks are ignored; an id beyond LARGEST_ID is None."""
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= LARGEST_ID else None
