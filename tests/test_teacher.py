import numpy as np
import pytest

from conftest import FixedScores
from tfkd.distill import teacher
from tfkd.errors import ConfigError


def oracle_user_topk(scores, d, k):
  s = scores.astype(np.float64).copy()
  s[d.train_users, d.train_items] = -np.inf
  return np.argsort(-s, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("chunk", [7, 1000])
def test_user_and_item_topk_match_numpy(tiny, chunk):
  rng = np.random.default_rng(0)
  scores = rng.permutation(tiny.num_users * tiny.num_items).reshape(
      tiny.num_users, tiny.num_items).astype(np.float32)  # distinct: no tie ambiguity
  model = FixedScores(scores)
  np.testing.assert_array_equal(teacher.user_topk(model, tiny, 9, chunk),
                                oracle_user_topk(scores, tiny, 9))
  got = teacher.item_topk(model, tiny, 6, chunk)
  expected = oracle_user_topk(scores.T, _transposed(tiny), 6)
  np.testing.assert_array_equal(got, expected)


class _T:
  pass


def _transposed(d):
  t = _T()
  t.train_users, t.train_items = d.train_items, d.train_users
  return t


def test_k_larger_than_catalog_is_refused(tiny):
  model = FixedScores(np.zeros((tiny.num_users, tiny.num_items)))
  with pytest.raises(ConfigError, match=f"user-side K=999 must be between 1 and the catalog's "
                     f"{tiny.num_items} items"):
    teacher.user_topk(model, tiny, 999)
