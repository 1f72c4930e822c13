"""The browser's static assets: the style sheet, the search page's script and the feature
pages' script (plain ES5, no modules and no fetch(): file:// pages cannot fetch local files, so
the search data is a ``search.js`` file that sets a global, loaded by the index and every
page) and the page layout (which file holds which feature)."""
from __future__ import annotations

import json

PER_PAGE = 128      # features per page: one page per block of 128 features of a layer


def page_name(layer: int, feature: int) -> str:
    """The page holding a feature; features/search.js repeats this rule in JS (SAEW.perPage)."""
    return f"l{layer}-{feature // PER_PAGE}.html"


CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 1100px;
       color: #222; background: #fff; line-height: 1.35; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin: 0 0 0.3em; font-size: 1.2em; }
h3 { font-size: 0.95em; margin: 0.8em 0 0.2em; color: #444; }
.feat { border-top: 2px solid #ddd; padding: 0.8em 0 1em; }
.desc { font-size: 1.05em; margin: 0.2em 0; } .m, .none { color: #777; font-size: 0.85em; }
.flag { display: inline-block; font-size: 0.75em; padding: 0 0.4em; border-radius: 3px; background: #eee; margin-left: 0.4em; }
.flag.on { background: #ffe2b8; } .dead { background: #f5c6c6; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ddd; padding: 0.1em 0.4em; text-align: left; }
th { background: #f5f5f5; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ctx { font-family: "DejaVu Sans Mono", monospace; font-size: 0.8em; white-space: pre-wrap; margin: 0.15em 0;
       border-left: 3px solid #eee; padding-left: 0.4em; }
.ctx i { font-style: normal; } .ctx b { outline: 1px solid #c33; font-weight: normal; }
.s0 { } .s1 { background: #fff0e6; } .s2 { background: #ffe0cc; } .s3 { background: #ffd1b3; }
.s4 { background: #ffc199; } .s5 { background: #ffb280; } .s6 { background: #ffa266; }
.s7 { background: #ff934d; } .s8 { background: #ff8333; } .s9 { background: #ff741a; }
ul { margin: 0.2em 0; padding-left: 1.3em; } li { font-size: 0.88em; }
nav a { margin-right: 0.8em; } #results li { margin: 0.15em 0; }
input#q { font-size: 1.1em; width: 100%; max-width: 40em; padding: 0.3em; }
.st { display: flex; flex-wrap: wrap; align-items: flex-end; gap: 0.4em 1.5em; }
.hist svg { display: block; width: 220px; height: 48px; border-bottom: 1px solid #999; }
.hist path { fill: #4682b4; } .hist .m { font-size: 0.75em; }
.lk .m { margin-left: 0.3em; }
"""

SEARCH_JS = r"""
(function () {
  var data = window.SAEW || {features: [], perPage: 128};
  var input = document.getElementById('q');
  var list = document.getElementById('results');
  var count = document.getElementById('count');
  var LIMIT = 200;
  var hay = [];
  for (var i = 0; i < data.features.length; i++) {
    var f = data.features[i];
    hay.push(('l' + f[0] + '/' + f[1] + ' l' + f[0] + ' f' + f[1] + ' ' + f[0] + '/' + f[1] + ' ' + f[2]).toLowerCase());
  }
  function link(f) {
    return 'l' + f[0] + '-' + Math.floor(f[1] / data.perPage) + '.html#f' + f[1];
  }
  function run() {
    var q = input.value.toLowerCase().replace(/^\s+|\s+$/g, '');
    while (list.firstChild) { list.removeChild(list.firstChild); }
    if (!q) { count.textContent = data.features.length + ' features; type to search'; return; }
    var terms = q.split(/\s+/), shown = 0, found = 0;
    for (var i = 0; i < hay.length; i++) {
      var ok = true;
      for (var t = 0; t < terms.length; t++) { if (hay[i].indexOf(terms[t]) < 0) { ok = false; break; } }
      if (!ok) { continue; }
      found++;
      if (shown >= LIMIT) { continue; }
      var f = data.features[i], li = document.createElement('li'), a = document.createElement('a');
      a.href = link(f);
      a.textContent = 'L' + f[0] + ' / ' + f[1];
      a.className = 'hit';
      li.appendChild(a);
      li.appendChild(document.createTextNode(' ' + (f[2] || '(no description)')));
      list.appendChild(li);
      shown++;
    }
    count.textContent = found + ' features match' + (found > shown ? ' (first ' + shown + ' shown)' : '');
  }
  var m = /[?&]q=([^&#]*)/.exec(window.location.search);
  if (m) { try { input.value = decodeURIComponent(m[1].replace(/\+/g, ' ')); } catch (e) { input.value = m[1]; } }
  input.addEventListener('input', run);
  run();
})();
"""


# The feature pages' script: the description of every linked feature of the lineage, co-activation
# and flow lists (``.lk``, links labelled L<layer>/<feature>), cut to SHORT characters, from
# search.js (loaded just before it) instead of repeated in every page that links the feature.
PAGE_JS = r"""
(function () {
  var data = window.SAEW, SHORT = 70;
  if (!data) { return; }
  var desc = {};
  for (var i = 0; i < data.features.length; i++) {
    var f = data.features[i];
    if (f[2]) { desc['L' + f[0] + '/' + f[1]] = f[2]; }
  }
  var links = document.querySelectorAll('.lk a');
  for (var j = 0; j < links.length; j++) {
    var d = desc[links[j].textContent];
    if (!d) { continue; }
    var span = document.createElement('span');
    span.className = 'm';
    span.textContent = d.length > SHORT ? d.slice(0, SHORT - 1) + '\u2026' : d;
    links[j].parentNode.insertBefore(span, links[j].nextSibling);
  }
})();
"""


def search_data(features: list[tuple]) -> str:
    """search.js: ``window.SAEW = {perPage, features: [[layer, feature, description], ...]}``."""
    body = json.dumps({"perPage": PER_PAGE, "features": [list(f) for f in features]},
                      ensure_ascii=True, separators=(",", ":"))
    return f"window.SAEW = {body};\n"
