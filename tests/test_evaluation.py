import math

import numpy as np
import pytest
import scipy.stats

from conftest import FixedScores
from tfkd.data import Dataset
from tfkd.evaluation import Evaluator, paired_ttest, per_user_metrics


def test_metrics_closed_form():
  m = per_user_metrics([0, 2, 4, 5, 12], cutoffs=(5,))
  np.testing.assert_array_equal(m["H@5"], [1, 1, 1, 0, 0])
  np.testing.assert_allclose(m["M@5"], [1, 1 / 3, 1 / 5, 0, 0])
  # NDCG of one relevant item at rank r: 1 / log2(r + 2); rank 2 -> 1/log2(4) = 0.5.
  np.testing.assert_allclose(m["NDCG@5"], [1, 0.5, 1 / math.log2(6), 0, 0])


def tiny_dataset(num_users=4, num_items=8, candidates=None):
  # user u trains on items {u, u+1}; valid item u+2; test item u+3.
  users = np.repeat(np.arange(num_users), 2)
  items = np.stack([np.arange(num_users), np.arange(num_users) + 1], 1).reshape(-1)
  valid = np.arange(num_users) + 2
  test = np.arange(num_users) + 3
  if candidates is None:
    candidates = np.zeros((num_users, 0), np.int32)
  return Dataset("t", "k", num_users, num_items, users, items, valid, test, candidates,
                 np.arange(num_users).astype(str), np.arange(num_items).astype(str))


def test_full_ranking_masks_train_and_valid_and_counts_ties_against_target():
  d = tiny_dataset(num_users=1)
  # Items 0,1 train; 2 valid; 3 test. Scores: train items outrank everything (masked),
  # valid outranks the test item (masked at test time), item 5 ties with the test item.
  scores = np.array([[9, 9, 8, 5, 1, 5, 7, 0]])
  ranks_test = Evaluator(d, "test", "full").ranks(FixedScores(scores))
  assert ranks_test.tolist() == [2]  # item 6 (7 > 5) and item 5 (tie) count; 0, 1, 2 masked
  ranks_valid = Evaluator(d, "valid", "full").ranks(FixedScores(scores))
  assert ranks_valid.tolist() == [0]  # valid item 2 (8): only masked train items are higher


def test_constant_scores_rank_last():
  d = tiny_dataset(num_users=1)
  ranks = Evaluator(d, "test", "full").ranks(FixedScores(np.zeros((1, 8))))
  assert ranks.tolist() == [8 - 3 - 1]  # 4 unmasked other items, all tied


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_full_and_sampled_ranks_match_numpy_oracle(seed, batch_size):
  rng = np.random.default_rng(seed)
  num_users, num_items = 7, 30
  cand = np.stack([rng.choice(np.arange(num_users + 5, num_items), 6, replace=False)
                   for _ in range(num_users)])
  d = tiny_dataset(num_users, num_items, cand)
  scores = rng.integers(0, 6, size=(num_users, num_items)).astype(np.float32)  # many ties
  model = FixedScores(scores)
  for split in ("valid", "test"):
    target = d.heldout_items(split)
    full = Evaluator(d, split, "full", batch_size=batch_size).ranks(model)
    sampled = Evaluator(d, split, "sampled", batch_size=batch_size).ranks(model)
    for u in range(num_users):
      mask = np.zeros(num_items, bool)
      mask[d.train_items[d.train_users == u]] = True
      if split == "test":
        mask[d.valid_items[u]] = True
      others = np.ones(num_items, bool)
      others[target[u]] = False
      expected_full = np.sum((scores[u] >= scores[u, target[u]]) & others & ~mask)
      expected_sampled = np.sum(scores[u, cand[u]] >= scores[u, target[u]])
      assert full[u] == expected_full and sampled[u] == expected_sampled


def test_paired_ttest_matches_scipy():
  rng = np.random.default_rng(0)
  a = rng.normal(0.5, 0.1, 12)
  b = a - rng.normal(0.02, 0.05, 12)
  diff, t, p = paired_ttest(a, b)
  ref = scipy.stats.ttest_rel(a, b)
  assert diff == pytest.approx(np.mean(a - b))
  assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-6)
  assert paired_ttest([1.0, 2.0], [1.0, 2.0])[2] == 1.0
