import numpy as np
import pytest

from wakd.evaluate import knn_search, recall_at_n


def test_recall_hand_computed():
    preds = np.array([[3, 1, 2, 0],   # positive at rank 2
                      [0, 1, 2, 3],   # positive at rank 1
                      [2, 3, 1, 0],   # positive at rank 4
                      [0, 1, 2, 3]])  # no positives: always a miss
    pos = [np.array([1]), np.array([0, 3]), np.array([0]), np.array([], dtype=np.int64)]
    r = recall_at_n(preds, pos, ns=(1, 2, 4))
    assert r == {1: 0.25, 2: 0.5, 4: 0.75}


def test_recall_needs_enough_predictions():
    with pytest.raises(ValueError, match="Recall@5 needs at least 5"):
        recall_at_n(np.zeros((1, 3), dtype=int), [np.array([0])], ns=(1, 5))


def test_knn_exact_and_ordered():
    rng = np.random.default_rng(0)
    db = rng.normal(size=(50, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = db[[4, 17]] + 0.01
    sims, idx = knn_search(db, q, 5)
    brute = np.argsort(-(q @ db.T), axis=1)[:, :5]
    np.testing.assert_array_equal(idx, brute)
    assert idx[0, 0] == 4 and idx[1, 0] == 17
    assert (np.diff(sims, axis=1) <= 1e-6).all()
