import numpy as np
import pytest
import tensorflow as tf

from conftest import FixedScores
from tfkd.distill import ranks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_of_matches_numpy_count(seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 20, size=(5, 40)).astype(np.float32)  # many ties
  scores[rng.random(scores.shape) < 0.2] = -np.inf  # masked entries
  queries = np.stack([rng.choice(40, 7, replace=False) for _ in range(5)]).astype(np.int32)
  got = np.asarray(ranks.ranks_of(tf.constant(scores), tf.constant(queries)))
  expected = np.array([[np.sum(scores[b] > scores[b, q]) for q in queries[b]] for b in range(5)])
  np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", ["distinct", "ties", "special", "float64", "masked_rows"])
def test_descending_order_is_the_stable_argsort(case):
  """The integer-key sort gives exactly NumPy's stable descending argsort: equal scores (finite,
  the -inf tail, +inf, -0.0 against 0.0) in column order, NaN rows and other dtypes too."""
  rng = np.random.default_rng(7)
  scores = rng.normal(size=(40, 300)).astype(np.float32)
  if case == "ties":
    scores = np.round(scores * 2).astype(np.float32) / 2
  scores[rng.random(scores.shape) < 0.1] = -np.inf
  if case == "special":
    scores[0, [3, 9, 200]] = np.inf
    scores[1, 5] = np.nan
    scores[2, :50] = -0.0
    scores[2, 50:90] = 0.0
    scores[3] = np.float32(3.5)
  if case == "float64":
    scores = scores.astype(np.float64) + 1e-12 * np.arange(300)  # distinct in float64 only
  if case == "masked_rows":
    scores[:5] = -np.inf
  got = ranks.descending_order(scores)
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, np.argsort(-scores, axis=1, kind="stable"))


@pytest.mark.parametrize("seed", range(6))
def test_ranks_and_top_match_ranks_of_and_tf_top_k(seed):
  """The top k read off each row's sort is tf.math.top_k's: best first, ties (finite, the -inf
  tail, -0.0 against 0.0) in column order, also when the k-th value is tied past k."""
  rng = np.random.default_rng(seed)
  rows, cols = 6, int(rng.integers(5, 60))
  scores = rng.integers(-3, 4, size=(rows, cols)).astype(np.float32)  # many ties
  scores[rng.random(scores.shape) < 0.3] = -np.inf
  scores[0] = -np.inf  # a row with nothing unmasked
  zero = scores == 0
  scores[zero] = rng.choice(np.array([0.0, -0.0], np.float32), size=zero.sum())
  queries = np.stack([rng.choice(cols, 4, replace=False) for _ in range(rows)]).astype(np.int32)
  for k in sorted({1, 3, cols // 2, cols - 1, cols} - {0}):
    got_ranks, got_top = ranks.ranks_and_top(scores, queries, k)
    np.testing.assert_array_equal(got_ranks, ranks.ranks_of(scores, queries))
    np.testing.assert_array_equal(got_top, tf.math.top_k(scores, k=k).indices.numpy())
    assert got_top.dtype == np.int32 and got_top.shape == (rows, k)
  with pytest.raises(ValueError, match="k must be"):
    ranks.ranks_and_top(scores, queries, cols + 1)


@pytest.mark.parametrize("block_bytes", [1, 3 * 40 * 4, 1 << 30])
def test_blocks_of_any_size_give_the_same_rows(monkeypatch, block_bytes):
  """Rows are split into blocks (of one row, of three, or one per worker) processed on the
  thread pool; every split gives the one-pass results in row order (NumPy oracles)."""
  monkeypatch.setattr(ranks, "_BLOCK_BYTES", block_bytes)
  rng = np.random.default_rng(11)
  scores = rng.integers(0, 9, size=(10, 40)).astype(np.float32)
  scores[rng.random(scores.shape) < 0.2] = -np.inf
  queries = np.stack([rng.choice(40, 5, replace=False) for _ in range(10)]).astype(np.int32)
  expected = np.array([[np.sum(scores[b] > scores[b, q]) for q in queries[b]] for b in range(10)])
  np.testing.assert_array_equal(ranks.ranks_of(scores, queries), expected)
  got_ranks, got_top = ranks.ranks_and_top(scores, queries, 6)
  np.testing.assert_array_equal(got_ranks, expected)
  np.testing.assert_array_equal(got_top, tf.math.top_k(scores, k=6).indices.numpy())
  np.testing.assert_array_equal(ranks.descending_order(scores),
                                np.argsort(-scores, axis=1, kind="stable"))


def test_full_ranks_closed_form():
  got = ranks.full_ranks(tf.constant([[0.5, 2.0, -1.0, 2.0]])).numpy()
  assert got.tolist() == [[2, 0, 3, 1]]


@pytest.mark.parametrize("side", ["user", "item"])
def test_side_scorer_masks_observed_entries(tiny, side):
  rng = np.random.default_rng(0)
  matrix = rng.normal(size=(tiny.num_users, tiny.num_items)).astype(np.float32)
  scorer = ranks.SideScorer(tiny, side)
  rows = np.array([0, 3, 5], np.int32)
  got = np.asarray(scorer.scores(FixedScores(matrix), rows))
  full = matrix.copy()
  full[tiny.train_users, tiny.train_items] = -np.inf
  expected = full[rows] if side == "user" else full.T[rows]
  np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("side", ["user", "item"])
def test_mean_rank_gap_matches_numpy(tiny, side):
  rng = np.random.default_rng(1)
  matrix = rng.normal(size=(tiny.num_users, tiny.num_items)).astype(np.float32)
  masked = matrix.copy()
  masked[tiny.train_users, tiny.train_items] = -np.inf
  rows = masked if side == "user" else masked.T
  n = 4
  # A "teacher" list per row: n unobserved columns in a random order.
  top = np.stack([rng.permutation(np.flatnonzero(np.isfinite(r)))[:n] for r in rows])
  expected = np.mean([[abs(np.sum(r > r[c]) - k) for k, c in enumerate(t)]
                      for r, t in zip(rows, top)])
  got = ranks.mean_rank_gap(FixedScores(matrix), ranks.SideScorer(tiny, side), top, chunk_size=3)
  assert got == pytest.approx(expected, rel=1e-6)


def test_mean_rank_gap_scores_at_most_score_bytes_at_a_time(tiny, monkeypatch):
  """The chunk of rows shrinks to SCORE_BYTES of scores; the mean is the same."""
  rng = np.random.default_rng(2)
  matrix = rng.normal(size=(tiny.num_users, tiny.num_items)).astype(np.float32)
  scorer = ranks.SideScorer(tiny, "user")
  top = np.argsort(-matrix, axis=1)[:, :3]
  expected = ranks.mean_rank_gap(FixedScores(matrix), scorer, top, chunk_size=1024)
  seen = []
  scores = scorer.scores
  monkeypatch.setattr(scorer, "scores", lambda m, rows: seen.append(len(rows)) or scores(m, rows))
  monkeypatch.setattr(ranks, "SCORE_BYTES", 2 * tiny.num_items * 4 + 1)
  got = ranks.mean_rank_gap(FixedScores(matrix), scorer, top, chunk_size=1024)
  assert max(seen) == 2 and sum(seen) == tiny.num_users
  assert got == pytest.approx(expected, rel=1e-6)


def test_final_rank_gaps_reads_the_top_of_deeper_knowledge(tiny):
  """final_rank_gaps measures over the first `top` columns of each side's teacher list, however
  deep the knowledge is, and gap_depths caps the depth at the other side's size."""
  rng = np.random.default_rng(2)
  matrix = rng.normal(size=(tiny.num_users, tiny.num_items)).astype(np.float32)
  masked = matrix.copy()
  masked[tiny.train_users, tiny.train_items] = -np.inf
  top, deep = 3, 5
  knowledge, expected = {}, {}
  for side, rows in (("user", masked), ("item", masked.T)):
    lists = np.stack([rng.permutation(np.flatnonzero(np.isfinite(r)))[:deep] for r in rows])
    knowledge[f"{side}_topk"] = lists
    expected[side] = np.mean([[abs(np.sum(r > r[c]) - k) for k, c in enumerate(t[:top])]
                              for r, t in zip(rows, lists)])
  got = ranks.final_rank_gaps(FixedScores(matrix), tiny, knowledge, top=top, chunk_size=4)
  assert got == pytest.approx(expected, rel=1e-6)
  assert ranks.gap_depths(tiny, top=10 ** 6) == (tiny.num_items, tiny.num_users)
  assert ranks.gap_depths(tiny, top=2) == (2, 2)


@pytest.mark.parametrize("seed", range(4))
def test_device_ranks_match_the_counting_oracle_and_the_host_path(seed):
  """DCD's device path (`refresh_device.DeviceOps`: tf.sort / tf.math.top_k / tf.searchsorted on
  tensors) gives the host path's ranks and top columns: rank = entries scoring strictly higher
  (a NumPy count), top columns as tf.math.top_k's (ties, the -inf tail, -0.0 against 0.0)."""
  from tfkd.distill import refresh_device
  rng = np.random.default_rng(seed)
  rows, cols = 7, int(rng.integers(5, 60))
  scores = rng.integers(-3, 4, size=(rows, cols)).astype(np.float32)  # many ties
  scores[rng.random(scores.shape) < 0.3] = -np.inf
  scores[0] = -np.inf
  zero = scores == 0
  scores[zero] = rng.choice(np.array([0.0, -0.0], np.float32), size=zero.sum())
  queries = np.stack([rng.choice(cols, 4, replace=False) for _ in range(rows)]).astype(np.int32)
  expected = np.array([[np.sum(scores[b] > scores[b, q]) for q in queries[b]]
                       for b in range(rows)])
  device, host = refresh_device.DeviceOps, refresh_device.HostOps
  on_device = tf.constant(scores)
  np.testing.assert_array_equal(device.ranks_of(on_device, queries).numpy(), expected)
  every = np.array([[np.sum(scores[b] > v) for v in scores[b]] for b in range(rows)])
  np.testing.assert_array_equal(device.all_ranks(on_device), every)
  np.testing.assert_array_equal(host.all_ranks(scores), every)
  for k in sorted({1, 3, cols // 2, cols} - {0}):
    got_ranks, got_top = device.ranks_and_top(on_device, queries, k)
    host_ranks, host_top = host.ranks_and_top(scores, queries, k)
    np.testing.assert_array_equal(got_ranks.numpy(), expected)
    np.testing.assert_array_equal(got_top.numpy(), host_top)
    np.testing.assert_array_equal(host_ranks, expected)
  top = queries[:, :3]
  np.testing.assert_array_equal(device.rank_gaps(on_device, top), host.rank_gaps(scores, top))


@pytest.mark.parametrize("side", ["user", "item"])
def test_device_scores_are_the_host_scores_on_the_device(tiny, side):
  from tfkd.distill import refresh_device
  matrix = np.random.default_rng(4).normal(size=(tiny.num_users, tiny.num_items))
  scorer = ranks.SideScorer(tiny, side)
  rows = np.array([0, 2, 5, 7], np.int32)
  got = refresh_device.DeviceOps.scores(scorer, FixedScores(matrix), rows)
  assert isinstance(got, tf.Tensor)
  np.testing.assert_array_equal(got.numpy(), scorer.scores(FixedScores(matrix), rows))


def test_scoring_traces_at_most_twice_per_model_and_side(tiny):
  """The refresh scores slices of varying length with two models on two sides: each (model,
  side) has its own function, traced for the first length and once more with the row dimension
  relaxed, whatever the number of calls (no retracing warning from TensorFlow)."""
  import keras
  from tfkd import models
  keras.utils.set_random_seed(0)
  pair = [models.build("bpr", tiny.num_users, tiny.num_items, dim=d) for d in (4, 6)]
  for model in pair:
    for side, n in (("user", tiny.num_users), ("item", tiny.num_items)):
      for length in (5, 4, 3, 5, 2, 1, 4):
        rows = np.arange(length) % n
        got = ranks.score_rows(model, rows, side).numpy()
        expected = (model.score_all(rows) if side == "user"
                    else tf.transpose(model.score_all(np.arange(tiny.num_users)))
                    .numpy()[rows])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
      assert ranks._scoring_function(model, side).experimental_get_tracing_count() <= 2
