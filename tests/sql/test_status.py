"""``saew status`` on an empty and on a non-empty warehouse (it once crashed on every non-empty one)."""
from __future__ import annotations

from tests.factories import make_sae, run_saew
from tests.formats import write_saelens


def test_status_lists_tables_of_a_non_empty_warehouse(saew, tmp_path):
    code, out, err = saew("status")
    assert code == 0 and "empty warehouse" in out
    write_saelens(tmp_path / "sae", make_sae())
    assert saew("ingest", "sae", tmp_path / "sae", "--release", "r")[0] == 0
    for fmt in ("table", "csv", "json"):
        code, out, err = saew("status", "--format", fmt)
        assert code == 0, err
        assert "features" in out and "saes" in out
    code, out, _ = saew("status")
    assert "(1 runs)" in out.splitlines()[0]


def test_home_before_or_after_the_command_words(saew, home, tmp_path):
    """``saew --home DIR status`` as git and dbt users expect; a --home after the words wins."""
    write_saelens(tmp_path / "sae", make_sae())
    assert saew("ingest", "sae", tmp_path / "sae", "--release", "r")[0] == 0
    for argv in (["--home", home, "status"], ["--home", tmp_path / "other", "status", "--home", home],
                 ["--home", home, "ingest", "sae", "--help"]):
        code, out, err = run_saew(home, *argv)
        assert code == 0, err
        assert "saes" in out or "usage: saew ingest sae" in out
    code, out, _ = run_saew(home, "--home", tmp_path / "empty", "status")
    assert code == 0 and "empty warehouse" in out


def test_query_longer_than_a_file_name(saew):
    """A one-line statement longer than the OS's file-name limit is SQL, not a missing file."""
    sql = "SELECT " + " + ".join(["1"] * 400) + " AS n"
    code, out, err = saew("query", sql, "--format", "csv")
    assert code == 0, err
    assert out.split() == ["n", "400"]
