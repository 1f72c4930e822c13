"""Folding and pair costs against hand computation."""
from __future__ import annotations

import numpy as np

from tests.factories import make_sae
from saew.sae.costs import fold, match_vectors, pair_cosines, pair_costs
from saew.storage.names import DECODER_METHODS


def test_fold_and_costs_by_hand():
    a = make_sae(4, 3, "jumprelu", seed=1)
    b = make_sae(4, 5, "jumprelu", seed=2)
    i, j = np.array([0, 2]), np.array([4, 1])
    wd, we, be = fold(a)
    np.testing.assert_allclose(wd[2], a.threshold[2] * a.w_dec[2], rtol=1e-6)
    np.testing.assert_allclose(we[2], a.w_enc[:, 2] / a.threshold[2], rtol=1e-6)
    for n, (x, y) in enumerate(zip(i, j)):
        ta, tb = float(a.threshold[x]), float(b.threshold[y])
        hand = (np.sum((ta * a.w_dec[x] - tb * b.w_dec[y]) ** 2)
                + np.sum((a.w_enc[:, x] / ta - b.w_enc[:, y] / tb) ** 2)
                + (a.b_enc[x] / ta - b.b_enc[y] / tb) ** 2)
        assert abs(pair_costs(a, b, i, j)[n] - hand) < 1e-4
        cos = a.w_dec[x] @ b.w_dec[y] / np.linalg.norm(a.w_dec[x]) / np.linalg.norm(b.w_dec[y])
        assert abs(pair_cosines(a.w_dec, b.w_dec, i, j)[n] - cos) < 1e-6
        assert abs(pair_costs(a, b, i, j, "cosine")[n] - (1 - cos)) < 1e-6
    u = pair_costs(a, b, i, j, "unfolded")
    hand0 = (np.sum((a.w_dec[0] - b.w_dec[4]) ** 2) + np.sum((a.w_enc[:, 0] - b.w_enc[:, 4]) ** 2)
             + (a.b_enc[0] - b.b_enc[4]) ** 2)
    assert abs(u[0] - hand0) < 1e-5


def test_every_decoder_method_has_vectors_and_costs():
    """The one list of decoder-space methods (storage.names) is what sae.costs implements."""
    a, b = make_sae(4, 3, "jumprelu", seed=1), make_sae(4, 5, "jumprelu", seed=2)
    i, j = np.array([0, 2]), np.array([4, 1])
    for method in DECODER_METHODS:
        assert match_vectors(a, method).shape[0] == 3
        assert np.isfinite(pair_costs(a, b, i, j, method)).all()
