"""A small parser for the seed's ``CREATE TABLE`` / ``CREATE INDEX`` statements.

Only what the seed uses: column lines with type, PRIMARY KEY, NOT NULL, UNIQUE, DEFAULT,
REFERENCES t(c) [ON DELETE action], CHECK (col IN (...)); table-level UNIQUE (...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_COPY = Path(__file__).resolve().parent / "seed_schema.md"
SEED_SHARED = REPO_ROOT.parent / "shared" / "seed" / "database-schema.md"

TYPE_NAMES = {
    "uuid": "uuid",
    "text": "text",
    "text[]": "text[]",
    "jsonb": "jsonb",
    "timestamptz": "timestamp with time zone",
    "boolean": "boolean",
    "integer": "integer",
    "decimal": "numeric",
    "inet": "inet",
}
ON_DELETE = {"cascade": "cascade", "set null": "set null", "restrict": "restrict"}
KEYWORDS = ("primary key", "not null", "unique", "default", "references", "check")


@dataclass
class Column:
    name: str
    type: str
    not_null: bool = False
    primary_key: bool = False
    unique: bool = False
    default: str | None = None
    references: tuple[str, str, str] | None = None  # (table, column, on delete)
    check: frozenset[str] | None = None  # the allowed values of `col IN (...)`


@dataclass
class Table:
    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    uniques: list[tuple[str, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    method: str
    columns: str  # normalised: lowercase, no spaces, e.g. "user_id,recorded_atdesc"


def seed_text() -> str:
    """The repo copy (the contract); the shared original only if the copy is missing."""
    path = SEED_COPY if SEED_COPY.exists() else SEED_SHARED
    return path.read_text()


def _sql_blocks(markdown: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", markdown, flags=re.S)


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def split_top_level(body: str) -> list[str]:
    """Split on commas outside parentheses and quotes."""
    parts: list[str] = []
    depth, quoted = 0, False
    current: list[str] = []
    for ch in body:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _balanced(text: str, start: int) -> int:
    """Index just past the parenthesis group opening at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced parentheses: {text}")


def _next_keyword(lower: str, start: int) -> int:
    positions = [
        m.start() for kw in KEYWORDS
        for m in re.finditer(r"\b" + kw.replace(" ", r"\s+") + r"\b", lower)
        if m.start() >= start
    ]
    return min(positions, default=len(lower))


def parse_check_values(expr: str) -> tuple[str, frozenset[str]]:
    match = re.fullmatch(r"\(\s*(\w+)\s+in\s*\((.*)\)\s*\)", expr.strip(), flags=re.S | re.I)
    if not match:
        raise ValueError(f"unsupported check: {expr}")
    return match.group(1).lower(), frozenset(re.findall(r"'([^']*)'", match.group(2)))


def _parse_column(item: str) -> Column:
    name, rest = item.split(None, 1)
    lower = rest.lower()
    type_end = _next_keyword(lower, 0)
    column = Column(name=name.lower(), type=TYPE_NAMES[lower[:type_end].strip()])
    pos = type_end
    while pos < len(lower):
        if lower.startswith("primary key", pos):
            column.primary_key = column.not_null = True
            pos += len("primary key")
        elif re.match(r"not\s+null", lower[pos:]):
            column.not_null = True
            pos += re.match(r"not\s+null", lower[pos:]).end()  # type: ignore[union-attr]
        elif lower.startswith("unique", pos):
            column.unique = True
            pos += len("unique")
        elif lower.startswith("default", pos):
            end = _next_keyword(lower, pos + len("default"))
            column.default = rest[pos + len("default"):end].strip().lower()
            pos = end
        elif lower.startswith("references", pos):
            match = re.match(
                r"references\s+(?:public\.|auth\.)?(\w+)\s*\((\w+)\)(?:\s+on\s+delete\s+"
                r"(cascade|set\s+null|restrict))?",
                lower[pos:],
            )
            if not match:
                raise ValueError(f"unsupported reference: {item}")
            target = match.group(1)
            if lower[pos:].startswith("references auth."):
                target = "auth." + target
            action = re.sub(r"\s+", " ", match.group(3) or "no action")
            column.references = (target, match.group(2), action)
            pos += match.end()
        elif lower.startswith("check", pos):
            open_at = lower.index("(", pos)
            end = _balanced(rest, open_at)
            check_column, values = parse_check_values(rest[open_at:end])
            assert check_column == column.name, item
            column.check = values
            pos = end
        elif lower[pos].isspace():
            pos += 1
        else:
            raise ValueError(f"cannot parse column definition: {item!r} at {lower[pos:]!r}")
    return column


def parse_tables(markdown: str) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    for block in _sql_blocks(markdown):
        sql = _strip_comments(block)
        for match in re.finditer(r"create\s+table\s+public\.(\w+)\s*\(", sql, flags=re.I):
            open_at = match.end() - 1
            body = sql[open_at + 1:_balanced(sql, open_at) - 1]
            table = Table(match.group(1).lower())
            for item in split_top_level(body):
                unique = re.fullmatch(r"unique\s*\(([^)]*)\)", item, flags=re.I)
                if unique:
                    table.uniques.append(
                        tuple(c.strip().lower() for c in unique.group(1).split(","))
                    )
                else:
                    column = _parse_column(item)
                    table.columns[column.name] = column
            tables[table.name] = table
    return tables


def normalise_index_columns(text: str) -> str:
    return re.sub(r"\s+", "", text.lower())


def parse_indexes(markdown: str) -> dict[str, Index]:
    indexes: dict[str, Index] = {}
    pattern = re.compile(
        r"create\s+index\s+(\w+)\s+on\s+public\.(\w+)\s*(?:using\s+(\w+)\s*)?\((.*?)\)\s*;",
        flags=re.I | re.S,
    )
    for block in _sql_blocks(markdown):
        for match in pattern.finditer(_strip_comments(block)):
            name = match.group(1).lower()
            indexes[name] = Index(
                name=name,
                table=match.group(2).lower(),
                method=(match.group(3) or "btree").lower(),
                columns=normalise_index_columns(match.group(4)),
            )
    return indexes
