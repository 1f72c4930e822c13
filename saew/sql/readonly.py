"""What ``saew query`` lets a statement do: read, unless ``--allow-write``; never write the home.

Statements are classified by DuckDB's own parser (``duckdb.extract_statements`` types, and
``duckdb.tokenize`` for the names and paths inside them), not by regular expressions:

* read-only (the default): SELECT (DESCRIBE, SHOW and SUMMARIZE parse as SELECT), EXPLAIN of
  such a statement (EXPLAIN ANALYZE runs it), SET VARIABLE, the reading PRAGMAs of
  ``READ_PRAGMAS`` and SET/RESET of the settings of ``SAFE_SETTINGS`` (none names a path);
  everything else -- COPY, ATTACH, DETACH, INSTALL, LOAD, EXPORT/IMPORT DATABASE, CREATE,
  INSERT, UPDATE, DELETE, DROP, ALTER, CALL, other SETs and PRAGMAs, ... -- is refused;
* ``--allow-write``: every statement runs (the catalog itself stays open read-only), but no
  statement may name a path among the home's own files (``OWN``: lake/, saes/, reports/,
  saew.duckdb*, a DuckLake home's saew.toml, ducklake-data/, ducklake.sqlite, and the dot-folders
  of staging, journal, versions and extensions): a COPY's or EXPORT's
  target, an ATTACH'd file, a SET of a directory; the same rule guards ``--out``;
  a COPY ... TO or EXPORT DATABASE target must be a quoted path, so it can be checked.
"""
from __future__ import annotations

import os
from pathlib import Path

import duckdb

from saew.errors import BadInput

ST = duckdb.StatementType
READ_TYPES = {ST.SELECT, ST.VARIABLE_SET}
READ_PRAGMAS = {"table_info", "show", "show_tables", "show_tables_expanded", "show_databases",
                "database_list", "database_size", "storage_info", "version", "platform",
                "functions", "collations", "metadata_info", "user_agent"}
SAFE_SETTINGS = {"variable", "threads", "memory_limit", "max_memory", "enable_progress_bar",
                 "enable_progress_bar_print", "timezone", "calendar", "default_order",
                 "default_null_order", "preserve_insertion_order", "schema", "search_path",
                 "max_expression_depth", "errors_as_json", "integer_division", "ieee_floating_point_ops"}
HINT = "saew query is read-only; pass --allow-write to write files outside the home"


def _tokens(sql: str) -> list[tuple[str, str]]:
    """(token text, type name) of a statement, comments dropped."""
    toks = duckdb.tokenize(sql)
    out = []
    for i, (start, kind) in enumerate(toks):
        end = toks[i + 1][0] if i + 1 < len(toks) else len(sql)
        name = str(kind).rsplit(".", 1)[-1]
        if name != "comment":
            out.append((sql[start:end].strip(), name))
    return out


def _word(tok: tuple[str, str]) -> str:
    return tok[0].strip('"').lower()


def _unquote(text: str) -> str:
    s = text.strip()
    if s[:1] in {"'", '"'} and s[-1:] == s[:1]:
        s = s[1:-1].replace(s[0] * 2, s[0])
    return s


def _name_after(toks: list[tuple[str, str]], first: set[str]) -> str:
    """The setting or pragma name: the first word after the leading keyword(s) in ``first``."""
    words = [_word(t) for t in toks if t[1] in ("keyword", "identifier")]
    while words and words[0] in first:
        words.pop(0)
    return words[0] if words else ""


def _explained(sql: str) -> str | None:
    """The statement an EXPLAIN [ANALYZE] explains, as text (None if it cannot be found)."""
    toks = duckdb.tokenize(sql)
    for start, kind in toks[1:]:
        if str(kind).endswith("keyword") and sql[start:].split(None, 1)[0].upper() not in {"ANALYZE", "ANALYSE"}:
            rest = sql[start:]
            try:
                if duckdb.extract_statements(rest):
                    return rest
            except duckdb.Error:
                continue
    return None


def check_readonly(st) -> None:
    """Refuse one parsed statement that could write (see the module doc)."""
    t, sql = st.type, st.query
    if t in READ_TYPES:
        return
    toks = _tokens(sql)
    if t == ST.EXPLAIN:
        inner = _explained(sql)
        if inner is not None:
            for s in duckdb.extract_statements(inner):
                check_readonly(s)
            return
    elif t == ST.PRAGMA:
        if _name_after(toks, {"pragma"}) in READ_PRAGMAS:
            return
    elif t == ST.SET:
        if _name_after(toks, {"set", "reset", "session", "global", "local"}) in SAFE_SETTINGS:
            return
    what = str(t).rsplit(".", 1)[-1].replace("_", " ")
    first = toks[0][0].upper() if toks else what
    raise BadInput(f"query: {first} statements are refused ({what}); {HINT}")


def inside(path: str, home: Path) -> bool:
    """Whether ``path`` (relative to the working directory) lies in the home, or is it."""
    if not path or "://" in path or path in {":memory:", "memory"}:
        return False
    p = Path(os.path.expanduser(path))
    try:
        p = p.resolve()
    except (OSError, RuntimeError):
        return True  # cannot tell: refuse
    return p == home or home in p.parents


def check_home_untouched(st, home: Path) -> None:
    """With ``--allow-write``: refuse a statement that names a path inside the home."""
    if st.type in READ_TYPES or st.type == ST.EXPLAIN:
        return
    toks = _tokens(st.query)
    strings = [t[0] for t in toks if t[1] == "string_const"]
    candidates = strings
    if st.type == ST.COPY:
        words = [_word(t) for t in toks]
        if "to" not in words:  # COPY table FROM 'file': reads a file into a table
            return
        k = len(words) - 1 - words[::-1].index("to")  # the target follows the last TO
        if k + 1 >= len(toks) or toks[k + 1][1] != "string_const":
            raise BadInput(f"query: with --allow-write the target of COPY ... TO must be a quoted "
                           f"path (so it can be checked against the home {home})")
        candidates = [toks[k + 1][0]]
    elif st.type == ST.EXPORT and not strings:
        raise BadInput(f"query: with --allow-write the target of EXPORT DATABASE must be a quoted "
                       f"path (so it can be checked against the home {home})")
    for c in candidates:
        if owned(_unquote(c), home):
            raise BadInput(f"query: {_unquote(c)} is inside the home's own files ({home}: lake/, saes/, "
                           f"reports/, saew.duckdb, dot-folders); --allow-write never writes them")


def check(sql: str, *, allow_write: bool, home: Path) -> list:
    """The statements of ``sql``, each checked; BadInput for SQL that does not parse or may not run."""
    if not allow_write and _imports(sql):   # duckdb 1.5 expands IMPORT DATABASE while parsing
        raise BadInput(f"query: IMPORT statements are refused (import database); {HINT}")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise BadInput(f"query: {str(e).splitlines()[0]}") from None
    if not statements:
        raise BadInput("query: no SQL statement given")
    for st in statements:
        if allow_write:
            check_home_untouched(st, home)
        else:
            check_readonly(st)
    return statements


def _imports(sql: str) -> bool:
    """Whether a statement of ``sql`` starts with IMPORT (by DuckDB's tokenizer)."""
    try:
        toks = _tokens(sql)
    except Exception:  # noqa: BLE001 - extract_statements reports what does not parse
        return False
    starts = [0] + [i + 1 for i, (text, _) in enumerate(toks) if text == ";"]
    return any(i < len(toks) and _word(toks[i]) == "import" for i in starts)


OWN = ("lake", "saes", "reports", "saew.duckdb", "saew.toml", "ducklake-data", "ducklake.sqlite")


def owned(path: str | Path, home: Path) -> bool:
    """Whether ``path`` is the home or lies in one of the home's own entries (``OWN``, a
    ``saew.duckdb*`` file, or a dot-folder such as the staging and version folders)."""
    if not inside(str(path), home):
        return False
    p = Path(os.path.expanduser(str(path))).resolve()
    if p == home:
        return True
    first = p.relative_to(home).parts[0]
    return first in OWN or first.startswith(".") or first.startswith("saew.duckdb")
