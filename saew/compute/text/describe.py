"""``saew describe``: deterministic descriptions from top-activating tokens.

For every feature of a release that has activations but no description from elsewhere
(Neuronpedia rows and other sources are kept untouched), the description lists the feature's
top tokens, as Neuronpedia's token lists do, and the context of its strongest activation:

    top tokens: "def", " return", " self" | strongest: "...class A:\\n    [[def]] f(self"

* tokens are grouped by their text with any leading whitespace shown as one space;
  a token's score is its maximum activation over its occurrences; tokens are ranked by that
  score, ties broken by the token_id of the occurrence reaching it;
* the context is up to CONTEXT_BEFORE tokens before and CONTEXT_AFTER after the strongest
  occurrence in the same document, the activating token in ``[[ ]]``.

Pure DuckDB over ``activations`` and ``tokens`` (one grouping per (feature, token text), then
one ranking per feature over those groups); source ``top-tokens``, explainer
``saew-top-tokens``. Dead features (no activation) get none. Re-running replaces the
``top-tokens`` rows of each layer (so they follow a new harvest) and never duplicates.
"""
from __future__ import annotations

from saew.errors import BadInput
from saew.storage.saes import require_release

SOURCE = "top-tokens"
EXPLAINER = "saew-top-tokens"
CONTEXT_BEFORE = 8
CONTEXT_AFTER = 3
MAX_TOKEN_CHARS = 24


def add_arguments(p) -> None:
    p.add_argument("--release", required=True)
    p.add_argument("--top", type=int, default=5, help="tokens per description (default 5)")


def run(args, ctx) -> str:
    return describe(ctx.lake, args.release, args.top)


def _escape(expr: str) -> str:
    """Newlines and tabs shown as \\n and \\t, so a description stays on one line."""
    return f"replace(replace(replace({expr}, chr(13), ''), chr(10), '\\n'), chr(9), '\\t')"


def _shown(expr: str) -> str:
    """A token as shown in the list: escaped, cut to MAX_TOKEN_CHARS."""
    e = _escape(expr)
    return (f"CASE WHEN length({e}) > {MAX_TOKEN_CHARS} THEN left({e}, {MAX_TOKEN_CHARS - 3}) || '...' "
            f"ELSE {e} END")


# one statement: new descriptions of one (release, layer); parameters: release, layer, top
DESCRIBE_SQL = f"""
WITH tok AS (             -- the release's tokens, each with its text as listed
    SELECT token_id, doc, pos, token,
           CASE WHEN trim(token, ' \t\n\r') = '' THEN token
                ELSE regexp_replace(token, '^\\s+', ' ') END AS word
    FROM tokens WHERE release = $release
),
act AS (
    SELECT a.token_id, a.feature, a.value, t.word
    FROM activations a JOIN tok t ON t.token_id = a.token_id
    WHERE a.release = $release AND a.layer = $layer AND a.value > 0
      AND a.feature NOT IN (SELECT feature FROM descriptions
                            WHERE release = $release AND layer = $layer
                              AND source IS DISTINCT FROM '{SOURCE}')
),
best_occurrence AS (      -- each (feature, token text): its strongest occurrence, ties by token_id
    SELECT feature, word, min({{'v': -value, 't': token_id}}) AS best FROM act GROUP BY feature, word
),
ranked AS (
    SELECT feature, word, best.t AS token_id,
           row_number() OVER (PARTITION BY feature ORDER BY best.v, best.t, word) AS rank
    FROM best_occurrence
    QUALIFY rank <= $top
),
top_tokens AS (
    SELECT feature,
           string_agg('"' || shown || '"', ', ' ORDER BY rank) AS toks
    FROM (SELECT feature, rank, {_shown('word')} AS shown FROM ranked)
    GROUP BY feature
),
context AS (
    SELECT r.feature,
           string_agg(CASE WHEN t.pos = p.pos THEN '[[' || t.token || ']]' ELSE t.token END,
                      '' ORDER BY t.pos) AS ctx,
           min(t.pos) > 0 AS cut_left
    FROM ranked r JOIN tok p ON p.token_id = r.token_id
    JOIN tok t ON t.doc = p.doc AND t.pos BETWEEN p.pos - {CONTEXT_BEFORE} AND p.pos + {CONTEXT_AFTER}
    WHERE r.rank = 1
    GROUP BY r.feature
)
SELECT k.feature,
       'top tokens: ' || k.toks || ' | strongest: "'
         || CASE WHEN c.cut_left THEN '...' ELSE '' END
         || {_escape('c.ctx')} || '"' AS description
FROM top_tokens k JOIN context c USING (feature)
ORDER BY k.feature
"""


def describe(lake, release: str, top: int = 5) -> str:
    import pyarrow as pa

    if top <= 0:
        raise BadInput(f"--top {top}: must be positive")
    layers = require_release(lake, release)
    con = lake.connect()
    try:
        have = {r[0]: r[1] for r in con.execute(
            "SELECT layer, count(*) FROM activations WHERE release = ? GROUP BY layer",
            [release]).fetchall()}
        if not have:
            raise BadInput(f"--release {release!r}: no activations; run saew harvest first")
        n_tok = con.execute("SELECT count(*) FROM tokens WHERE release = ?", [release]).fetchall()[0][0]
        if not n_tok:
            raise BadInput(f"--release {release!r}: activations exist but no tokens (ingested "
                           f"activations carry no text); run saew harvest to describe features")
        written = []
        for L in layers:
            if L not in have:
                continue
            new = con.execute(DESCRIBE_SQL, {"release": release, "layer": int(L), "top": int(top)}
                              ).to_arrow_table()
            kept = con.execute("SELECT feature, description, explainer, source FROM descriptions "
                               "WHERE release = ? AND layer = ? AND source IS DISTINCT FROM ?",
                               [release, int(L), SOURCE]).to_arrow_table()
            n = new.num_rows
            new = new.append_column("explainer", pa.array([EXPLAINER] * n, pa.string())) \
                     .append_column("source", pa.array([SOURCE] * n, pa.string()))
            rows = pa.concat_tables([kept, new.select(kept.column_names)], promote_options="permissive")
            rows = rows.sort_by("feature")
            lake.write("descriptions", rows, release=release, layer=int(L))
            written.append(f"L{L}: {n}")
    finally:
        con.close()
    return f"described {release!r} from top-activating tokens ({', '.join(written)} features)"
