import numpy as np
import pytest

from tfkd.data import NO_ITEM, Recipe, RawLog, leave_one_out, prepare, sample_candidates
from tfkd.errors import DataError


def raw(pairs, ratings=None, stamps=None):
  u, i = zip(*pairs)
  return RawLog(np.array(u, str), np.array(i, str),
                None if ratings is None else np.array(ratings, float),
                None if stamps is None else np.array(stamps, float), source="t")


def test_reindex_by_first_appearance_and_dedupe():
  p = prepare(raw([("b", "x"), ("a", "y"), ("b", "x"), ("a", "x")]), Recipe())
  assert p.user_raw_ids.tolist() == ["b", "a"] and p.item_raw_ids.tolist() == ["x", "y"]
  assert list(zip(p.users, p.items)) == [(0, 0), (1, 1), (1, 0)]


def test_dedupe_keeps_earliest_timestamp():
  p = prepare(raw([("a", "x"), ("a", "x"), ("a", "y")], stamps=[9, 3, 5]), Recipe())
  assert sorted(zip(p.items.tolist(), p.timestamps.tolist())) == [(0, 3.0), (1, 5.0)]


def test_rating_threshold():
  p = prepare(raw([("a", "x"), ("a", "y")], ratings=[2, 4]), Recipe(min_rating=4))
  assert p.item_raw_ids.tolist() == ["y"]


def test_one_pass_versus_kcore():
  # Users: a has x,y; b has x,y; c has x only. Items: x (3 users), y (2 users).
  pairs = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "x"), ("d", "z"), ("d", "x")]
  # min_user=2 drops c; then min_item=3: x has a,b,d (3) kept; y (2) and z (1) dropped.
  one = prepare(raw(pairs), Recipe(min_user_interactions=2, min_item_interactions=3))
  assert sorted(one.user_raw_ids.tolist()) == ["a", "b", "d"] and one.num_items == 1
  # k-core: users now have 1 item each (< 2): everything goes, which is refused.
  with pytest.raises(DataError, match="no interactions left"):
    prepare(raw(pairs), Recipe(min_user_interactions=2, min_item_interactions=3, kcore=True))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_leave_one_out(seed):
  rng = np.random.default_rng(seed)
  users = np.repeat(np.arange(30), rng.integers(1, 9, 30))
  items = np.concatenate([rng.permutation(50)[:n] for n in np.bincount(users)])
  tu, ti, valid, test = leave_one_out(users, items, 30, by="random", seed=seed)
  for u in range(30):
    mine = set(items[users == u])
    train = set(ti[tu == u])
    if len(mine) < 3:
      assert valid[u] == NO_ITEM and test[u] == NO_ITEM and train == mine
    else:
      assert valid[u] != test[u] and {valid[u], test[u]} <= mine
      assert train | {valid[u], test[u]} == mine and len(train) == len(mine) - 2
  again = leave_one_out(users, items, 30, by="random", seed=seed)
  np.testing.assert_array_equal(again[3], test)


def test_leave_last_out_by_timestamp():
  users = np.array([0, 0, 0, 0, 1, 1, 1])
  items = np.array([5, 6, 7, 8, 1, 2, 3])
  stamps = np.array([4, 1, 3, 2, 9, 8, 7])
  tu, ti, valid, test = leave_one_out(users, items, 2, stamps, by="timestamp")
  assert test.tolist() == [5, 1] and valid.tolist() == [7, 2]
  assert ti[tu == 0].tolist() == [6, 8] and ti[tu == 1].tolist() == [3]  # time order kept


def test_candidates_are_unobserved_distinct_and_seeded():
  indptr = np.array([0, 3, 5, 5])
  seen = np.array([0, 1, 2, 3, 9])
  c = sample_candidates(12, indptr, seen, 7, seed=3)
  assert c.shape == (3, 7)
  for u in range(3):
    assert len(set(c[u])) == 7 and not set(c[u]) & set(seen[indptr[u]:indptr[u + 1]])
  np.testing.assert_array_equal(c, sample_candidates(12, indptr, seen, 7, seed=3))
  with pytest.raises(DataError, match="only 9 unobserved items"):
    sample_candidates(12, indptr, seen, 10)
