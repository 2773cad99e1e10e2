"""What the web's SQL endpoint may run: one read-only statement over the pipeline's own database.

The endpoint is the only way into an embedded chdb while its worker runs, and a convenience on a
server; it must not become a way out of the pipeline's database. ClickHouse itself can read
files, URLs and other servers through table functions (``url()``, ``remote()``, ``file()``...),
and other databases (``system.*`` among them) through qualified names. So a statement is refused
unless it is one of SELECT, WITH, SHOW TABLES, SHOW CREATE, DESCRIBE or EXISTS; it calls no
table function; and every qualified name it uses names the pipeline's database. A name like
``other.column`` where ``other`` is a database's name is refused too, even if meant as a table
alias: rename the alias. On a server the statement also runs under ``readonly = 1``
(``ClickHouse.read``), so a statement the checks missed still cannot write or change settings.
"""

from __future__ import annotations

import re

_STATEMENTS = re.compile(r"^\s*(SELECT|WITH|SHOW\s+TABLES|SHOW\s+CREATE|DESCRIBE|DESC|EXISTS)\b", re.I)
_TABLE_FUNCTION = re.compile(r"\b(?:FROM|JOIN|TABLE)\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.I)
_QUALIFIER = re.compile(r"(?:`([^`]+)`|\"([^\"]+)\"|\b([A-Za-z_][A-Za-z0-9_]*))\s*\.\s*[`\"A-Za-z_]")
_SHOW_FROM = re.compile(r"^\s*SHOW\s+TABLES\s+(?:FROM|IN)\s+[`\"]?([A-Za-z0-9_]+)", re.I)
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
#: always off limits, whatever the server lists
_SYSTEM = {"system", "information_schema"}


class Refused(ValueError):
    """A statement the endpoint does not run; the text says why."""


def check(sql: str, database: str, databases: set[str]) -> None:
    """Raise ``Refused`` unless ``sql`` is a single read-only statement over ``database`` only.

    ``databases``: the names of the server's databases, to recognise qualified names that leave
    the pipeline's one.
    """
    # Comments and string literals cannot call anything or name a table: look past them.
    text = _STRING.sub("''", _COMMENT.sub(" ", sql))
    if ";" in text.strip().rstrip(";"):
        raise Refused("one statement at a time")
    if not _STATEMENTS.match(text):
        raise Refused("only SELECT, WITH, SHOW TABLES, SHOW CREATE, DESCRIBE or EXISTS")
    function = _TABLE_FUNCTION.search(text)
    if function:
        raise Refused(f"table functions such as {function.group(1)}() are not allowed")
    shown = _SHOW_FROM.match(text)
    if shown and shown.group(1) != database:
        raise Refused(f"only the pipeline's database {database} may be read")
    forbidden = {d.lower() for d in databases if d != database} | _SYSTEM
    for match in _QUALIFIER.finditer(text):
        qualifier = next(g for g in match.groups() if g is not None)
        if qualifier.lower() in forbidden:
            raise Refused(f"only the pipeline's database {database} may be read, not {qualifier}")
