"""Corpora: the builtin stdlib mix and local .txt / .jsonl / .parquet files."""
from __future__ import annotations

import ast
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saew.compute.corpus import MIN_CODE_CHARS, extract, load_corpus, stdlib_files
from saew.errors import BadInput

SOURCE = '''"""A module docstring that is long enough to count as prose: it explains what the module does."""

def short():
    return 1

def longer(a, b):
    """Add two numbers; this docstring is long enough to be a prose document of its own."""
    total = a + b
    for i in range(3):
        total += i
    return total

class Thing:
    """Too short."""

    def method(self, value):
        def nested(x):
            return x * 2 + 1000000000000000000000000000000000000000000000000000000000000000
        return nested(value) + nested(value) + nested(value) + nested(value)
'''


def _is_code(doc: str) -> bool:
    try:
        tree = ast.parse(doc)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body)


def test_extract_docstrings_and_functions():
    prose, code = extract(SOURCE)
    assert prose == [
        "A module docstring that is long enough to count as prose: it explains what the module does.",
        "Add two numbers; this docstring is long enough to be a prose document of its own.",
    ]
    # `short` is under MIN_CODE_CHARS; the method is dedented; the nested function stays inside it
    assert [c.splitlines()[0] for c in code] == ["def longer(a, b):", "def method(self, value):"]
    assert all(len(c) >= MIN_CODE_CHARS for c in code)
    assert code[1].startswith("def method") and "    def nested(x):" in code[1]
    assert extract("def broken(:\n") == ([], [])


def test_builtin_is_deterministic_mixed_and_deduplicated():
    a = load_corpus("builtin", seed=0)
    assert a == load_corpus("builtin", seed=0)
    b = load_corpus("builtin", seed=1)
    assert a != b and sorted(a) == sorted(b)  # same documents, another order
    assert len(a) > 1000 and len(set(a)) == len(a)
    assert len({" ".join(d.split()) for d in a}) == len(a)
    is_code = [_is_code(d) for d in a]
    frac = sum(is_code) / len(is_code)
    assert 0.2 < frac < 0.9
    head = is_code[:200]  # every prefix holds about the same mix
    assert abs(sum(head) / len(head) - frac) < 0.05
    assert stdlib_files() and not any("test" in p.parts[-2:-1] for p in stdlib_files())


def test_txt_documents_are_separated_by_blank_lines(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("first doc\nsame doc\n\n\n  \nsecond doc\r\n\r\nthird\n", encoding="utf-8")
    assert load_corpus(str(p)) == ["first doc\nsame doc", "second doc", "third"]


def test_jsonl_and_parquet(tmp_path):
    j = tmp_path / "c.jsonl"
    j.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(["a b", "", "c"])) + "\n")
    assert load_corpus(str(j)) == ["a b", "c"]
    q = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["x y", None, "z"], "n": [1, 2, 3]}), q)
    assert load_corpus(str(q)) == ["x y", "z"]


@pytest.mark.parametrize("name, content, message", [
    ("missing.txt", None, "no such file"),
    ("c.csv", "text\nhello\n", "unknown corpus format"),
    ("c.jsonl", '{"text": "ok"}\nnot json\n', "line 2 is not JSON"),
    ("c.jsonl", '{"body": "x"}\n', 'line 1 has no string field "text"'),
    ("c.txt", "\n\n \n", "holds no text"),
    ("c.parquet", b"PAR1 not really", "not a readable Parquet file"),
    ("c.txt", b"\xff\xfe\xfa bad utf8", "cannot read it"),
])
def test_bad_corpus_inputs(tmp_path, name, content, message):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    with pytest.raises(BadInput, match=message):
        load_corpus(str(p))


def test_parquet_without_text_column(tmp_path):
    q = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": ["x"]}), q)
    with pytest.raises(BadInput, match='no column "text"'):
        load_corpus(str(q))
    pq.write_table(pa.table({"text": [1, 2]}), q)
    with pytest.raises(BadInput, match="expected strings"):
        load_corpus(str(q))


def test_disk_cache_round_trip_rebuilds_malformed_and_skips_unwritable(tmp_path):
    from saew.compute.corpus import disk_cached

    built = []

    def build():
        built.append(1)
        return ("a prose document", "ünïcode"), ("def f():\n    return 1",)

    path = tmp_path / "cache" / "c.json"
    first = disk_cached(path, build)
    assert path.is_file() and len(built) == 1
    assert disk_cached(path, build) == first and len(built) == 1      # read back, not rebuilt
    assert not list(path.parent.glob("*.tmp"))                          # the write was a rename
    for bad in ("{not json", '{"prose": [1], "code": []}', '{"code": []}'):
        path.write_text(bad)
        assert disk_cached(path, build) == first
    assert len(built) == 4 and json.loads(path.read_text())["prose"] == list(first[0])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert disk_cached(blocker / "c.json", build) == first             # cannot write: still built
    assert disk_cached(None, build) == first and len(built) == 6


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from saew.compute.corpus import cache_dir, stdlib_key

    monkeypatch.setenv("SAEW_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.setenv("SAEW_CACHE_DIR", "none")
    assert cache_dir() is None
    monkeypatch.delenv("SAEW_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "saew"
    assert stdlib_key() == stdlib_key() and len(stdlib_key()) == 32


def test_builtin_from_the_cache_equals_a_fresh_parse(monkeypatch, tmp_path):
    from saew.compute import corpus

    fresh = corpus._parse_stdlib()
    monkeypatch.setenv("SAEW_CACHE_DIR", str(tmp_path))
    corpus._stdlib_pieces.cache_clear()
    try:
        assert corpus._stdlib_pieces() == fresh                        # parsed, then written
        corpus._stdlib_pieces.cache_clear()
        assert corpus._stdlib_pieces() == fresh                        # read back from the file
        assert len(list(tmp_path.glob("stdlib-corpus-*.json"))) == 1
    finally:
        corpus._stdlib_pieces.cache_clear()
