"""``saew browse``: the static feature browser of a release (an index with client-side search
and one page per block of features of a layer), rendered from the ``rpt_feature_*`` models."""
