import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FixedScores, perm_nll
from tfkd import models
from tfkd.distill import DCDConfig, Distiller, RRDConfig, ranks, teacher as teacher_lib
from tfkd.distill.dcd import DCD
from tfkd.errors import ConfigError


def oracle_ranks(matrix, d):
  """Rank of every unobserved entry among the user's unobserved entries (strictly greater)."""
  m = matrix.astype(np.float64).copy()
  m[d.train_users, d.train_items] = -np.inf
  return np.array([[np.sum(row > v) for v in row] for row in m]), m


def setup_dcd(d, teacher_m, student_m, **kw):
  cfg = DCDConfig(rrd=RRDConfig(top=20, num_interesting=4, num_uninteresting=4), top=20,
                  item_top=15, num_under=5, num_over=5, item_num_under=4, item_num_over=4,
                  deterministic=True, **kw)
  method = DCD(cfg)
  teacher, student = FixedScores(teacher_m), FixedScores(student_m)
  knowledge = {"user_topk": teacher_lib.user_topk(teacher, d, method.user_k),
               "item_topk": teacher_lib.item_topk(teacher, d, method.item_k)}
  method.setup(d, student, teacher, knowledge)
  return method, knowledge


@pytest.mark.parametrize("candidates", ["teacher_top", "union", "all"])
def test_deterministic_refresh_matches_numpy(tiny, candidates):
  rng = np.random.default_rng(0)
  shape = (tiny.num_users, tiny.num_items)
  t = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32)
  s = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32)
  method, knowledge = setup_dcd(tiny, t, s, candidates=candidates, mu=0.05)
  method.refresh(0)
  rt_all, _ = oracle_ranks(t, tiny)
  rs_all, masked = oracle_ranks(s, tiny)
  state, valid = method.user_side.state.numpy(), method.user_side.valid.numpy()
  gaps = []
  for u in range(tiny.num_users):
    top_t = knowledge["user_topk"][u, :20]
    if candidates == "teacher_top":
      cand = top_t
    elif candidates == "union":
      top_s = np.argsort(-masked[u], kind="stable")[:20]
      cand = np.concatenate([top_t, [i for i in top_s if i not in set(top_t)]])
    else:
      cand = np.flatnonzero(np.isfinite(masked[u]))
    under = np.tanh(np.maximum(0.05 * (rs_all[u, cand] - rt_all[u, cand]), 0))
    over = np.tanh(np.maximum(0.05 * (rt_all[u, cand] - rs_all[u, cand]), 0))
    # Largest under-estimation errors (ties: any order), then sorted by teacher rank.
    k_l = min(5, int(np.sum(under > 0)))
    got_l = state[u, :5][valid[u, :5]]
    assert len(got_l) == k_l
    assert np.all(np.diff(rt_all[u, got_l]) > 0)  # teacher order
    threshold = np.sort(under)[::-1][k_l - 1] if k_l else np.inf
    assert set(cand[under > threshold]) <= set(got_l) <= set(cand[under >= threshold])
    got_h = state[u, 5:][valid[u, 5:]]
    k_h = min(5, int(np.sum(over > 0)))
    assert len(got_h) == k_h
    threshold = np.sort(over)[::-1][k_h - 1] if k_h else np.inf
    assert set(cand[over > threshold]) <= set(got_h) <= set(cand[over >= threshold])
    gaps.append(np.abs(rs_all[u, top_t] - rt_all[u, top_t]))
  assert method.refreshes[-1]["user_discrepancy"] == pytest.approx(np.mean(gaps))


@pytest.mark.parametrize("candidates", ["teacher_top", "union"])
def test_item_side_lists_are_users_who_did_not_interact(tiny, candidates):
  rng = np.random.default_rng(1)
  shape = (tiny.num_users, tiny.num_items)
  student_m = rng.normal(size=shape)
  method, knowledge = setup_dcd(tiny, rng.normal(size=shape), student_m, candidates=candidates)
  method.refresh(0)
  seen = set(zip(tiny.train_users.tolist(), tiny.train_items.tolist()))
  _, masked = oracle_ranks(student_m, tiny)
  state, valid = method.item_side.state.numpy(), method.item_side.valid.numpy()
  for i in range(tiny.num_items):
    student_top = np.argsort(-masked[:, i], kind="stable")[:15]
    for u in state[i][valid[i]]:
      assert (u, i) not in seen
      assert u in knowledge["item_topk"][i] or (candidates == "union" and u in student_top)


def test_too_many_corrections_for_the_candidate_list(tiny):
  rng = np.random.default_rng(1)
  shape = (tiny.num_users, tiny.num_items)
  cfg = DCDConfig(rrd=RRDConfig(top=20, num_interesting=4), top=20, item_top=15,
                  num_under=5, num_over=5, item_num_under=40, item_num_over=4,
                  candidates="teacher_top")
  method = DCD(cfg)
  t = FixedScores(rng.normal(size=shape))
  with pytest.raises(ConfigError, match="item side draws 40 under- and 4 over-estimated entries "
                     "from a candidate list of only 15"):
    method.setup(tiny, t, t, {"user_topk": teacher_lib.user_topk(t, tiny, 20),
                              "item_topk": teacher_lib.item_topk(t, tiny, 15)})


def test_dcd_training_step_tracks_every_part_and_keeps_teacher(tiny):
  keras.utils.set_random_seed(0)
  teacher = models.build("bpr", tiny.num_users, tiny.num_items, dim=16, init_stddev=0.3)
  student = models.build("bpr", tiny.num_users, tiny.num_items, dim=4, init_stddev=0.3)
  method = DCD(DCDConfig(rrd=RRDConfig(top=20, num_interesting=4, num_uninteresting=4), top=20,
                         item_top=15, num_under=5, num_over=5, item_num_under=4,
                         item_num_over=4, user_weight=1.0, item_weight=1.0))
  method.setup(tiny, student, teacher,
               {"user_topk": teacher_lib.user_topk(teacher, tiny, method.user_k),
                "item_topk": teacher_lib.item_topk(teacher, tiny, method.item_k)})
  method.refresh(0)
  distiller = Distiller(student, teacher, method)
  distiller.declare_parts()
  distiller.compile(optimizer=keras.optimizers.Adam(0.05))
  from tfkd.data import pipelines
  method.rrd.resample(1)
  x = next(iter(pipelines.pairwise(tiny, 64, seed=0)))
  before = [w.numpy().copy() for w in teacher.weights]
  logs = distiller.train_on_batch(x, return_dict=True)
  assert {"base_loss", "rrd_loss", "ucd_loss", "icd_loss"} <= set(logs)
  assert logs["ucd_loss"] > 0 and logs["icd_loss"] > 0
  for w, b in zip(teacher.weights, before):
    np.testing.assert_array_equal(w.numpy(), b)


def test_dcd_loss_parts_match_numpy_oracle(tiny):
  # The corrections are read from the refreshed lists inside the step and scored together with
  # RRD's lists; each part must still equal its own relaxed permutation NLL.
  keras.utils.set_random_seed(1)
  teacher = models.build("bpr", tiny.num_users, tiny.num_items, dim=16, init_stddev=0.3)
  student = models.build("bpr", tiny.num_users, tiny.num_items, dim=4, init_stddev=0.3)
  rrd_cfg = RRDConfig(top=20, num_interesting=4, num_uninteresting=4, item_top=15,
                      item_num_interesting=3, item_num_uninteresting=3, item_weight=0.5)
  method = DCD(DCDConfig(rrd=rrd_cfg, top=20, item_top=15, num_under=5, num_over=5,
                         item_num_under=4, item_num_over=4, user_weight=2.0, item_weight=3.0))
  method.setup(tiny, student, teacher,
               {"user_topk": teacher_lib.user_topk(teacher, tiny, method.user_k),
                "item_topk": teacher_lib.item_topk(teacher, tiny, method.item_k)})
  method.refresh(0)
  from tfkd.data import pipelines
  method.rrd.resample(4)
  x = next(iter(pipelines.pairwise(tiny, 64, seed=0)))
  parts = {k: float(v) for k, v in method.loss_parts(student, x).items()}
  s = student.score_all(tf.range(tiny.num_users)).numpy().astype(np.float64)  # [U, I]
  users, items = (r.numpy() for r in method.rrd.batch_rows(x))

  def expected(rows, lists, valid, k, by_row):
    out = []
    for r, cols, ok in zip(rows, lists, valid):
      v = by_row(r, cols)
      out.append(perm_nll(v[:k][ok[:k]], v[k:][ok[k:]]))
    return np.mean(out)

  user_state = method.user_side.state.numpy()[users]
  user_valid = method.user_side.valid.numpy()[users]
  item_state = method.item_side.state.numpy()[items]
  item_valid = method.item_side.valid.numpy()[items]
  ones = lambda a: np.ones(a.shape, bool)
  by_user = lambda u, cols: s[u, cols]
  by_item = lambda i, rows: s[rows, i]
  rrd_items = method.rrd.lists["user"].numpy()[users]
  ir_users = method.rrd.lists["item"].numpy()[items]
  assert parts["rrd_loss"] == pytest.approx(
      1e-3 * expected(users, rrd_items, ones(rrd_items), 4, by_user), rel=1e-4)
  assert parts["ucd_loss"] == pytest.approx(
      2.0 * expected(users, user_state, user_valid, 5, by_user), rel=1e-4)
  assert parts["ir_rrd_loss"] == pytest.approx(
      0.5 * expected(items, ir_users, ones(ir_users), 3, by_item), rel=1e-4)
  assert parts["icd_loss"] == pytest.approx(
      3.0 * expected(items, item_state, item_valid, 4, by_item), rel=1e-4)


@pytest.mark.parametrize("side", ["user", "item"])
def test_union_refresh_with_kept_teacher_ranks_equals_recomputing_them(tiny, side):
  # The first refresh builds the teacher's ranks of every entry, later ones read them: the
  # lists, their validity and the logged gaps equal those of a refresh that re-scores and
  # re-sorts the teacher each time, over refreshes with a changed student.
  rng = np.random.default_rng(3)
  shape = (tiny.num_users, tiny.num_items)
  t, s0, s1 = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
  runs = {}
  for cache in (1 << 20, 0):
    method, _ = setup_dcd(tiny, t, s0, candidates="union", cache_bytes=cache)
    out = []
    for epoch, s in ((0, s0), (5, s1), (10, s0)):
      method.student = FixedScores(s)
      method.refresh(epoch)
      part = getattr(method, f"{side}_side")
      out.append((part.state.numpy(), part.valid.numpy(),
                  method.refreshes[-1][f"{side}_discrepancy"]))
    part = getattr(method, f"{side}_side")
    runs[cache] = (out, part.teacher_ranks)
    # Ranks of any queries, read from the kept ranks or recomputed, equal ranks_of's.
    rows = np.arange(part.scorer.num_rows, dtype=np.int32)
    queries = rng.integers(0, part.scorer.num_cols, size=(len(rows), 7)).astype(np.int32)
    expected = ranks.ranks_of(part.scorer.scores(FixedScores(t), rows), queries)
    assert np.array_equal(part._teacher_ranks_of(FixedScores(t), rows, queries), expected)
  kept, none = runs[1 << 20][1], runs[0][1]
  assert none is None and kept is not None and kept.dtype == np.int16
  # The kept ranks are the oracle's: entries of the row scoring strictly higher.
  m = t.astype(np.float64)
  m[tiny.train_users, tiny.train_items] = -np.inf
  m = m if side == "user" else m.T
  oracle = (m[:, None, :] > m[:, :, None]).sum(-1)
  assert np.array_equal(kept[np.isfinite(m)], oracle[np.isfinite(m)])
  for (a_state, a_valid, a_gap), (b_state, b_valid, b_gap) in zip(*(runs[c][0]
                                                                    for c in (1 << 20, 0))):
    assert np.array_equal(a_valid, b_valid)
    assert np.array_equal(np.where(a_valid, a_state, -1), np.where(b_valid, b_state, -1))
    assert a_gap == b_gap


def test_union_teacher_ranks_are_not_kept_beyond_the_budget(tiny):
  t = np.random.default_rng(0).normal(size=(tiny.num_users, tiny.num_items)).astype(np.float32)
  cells = tiny.num_users * tiny.num_items
  method, _ = setup_dcd(tiny, t, t[::-1].copy(), candidates="union", cache_bytes=2 * cells - 1)
  method.refresh(0)
  assert method.user_side.teacher_ranks is None and method.item_side.teacher_ranks is None
  method, _ = setup_dcd(tiny, t, t[::-1].copy(), candidates="union", cache_bytes=2 * cells)
  method.refresh(0)
  assert method.user_side.teacher_ranks.shape == (tiny.num_users, tiny.num_items)
  assert method.item_side.teacher_ranks.shape == (tiny.num_items, tiny.num_users)


@pytest.mark.parametrize("candidates", ["teacher_top", "union", "all"])
def test_refresh_scored_in_slices_draws_the_same_lists(tiny, candidates, monkeypatch):
  """A chunk's rows scored and ranked in slices of a few rows (less memory) give the lists,
  validity and gaps of the whole chunk at once, with the sampled (not deterministic) draws."""
  from tfkd.distill import dcd_side
  rng = np.random.default_rng(5)
  shape = (tiny.num_users, tiny.num_items)
  t, s = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
  runs = []
  for score_bytes in (1 << 30, 3 * max(shape) * 4):  # whole chunks; ~3 rows per slice
    monkeypatch.setattr(dcd_side, "_SCORE_BYTES", score_bytes)
    method, _ = setup_dcd(tiny, t, s, candidates=candidates)
    method.config.deterministic = False
    method.refresh(0)
    record = method.refreshes[-1]
    runs.append([(side.state.numpy(), side.valid.numpy())
                 for side in (method.user_side, method.item_side)] +
                [record["user_discrepancy"], record["item_discrepancy"]])
  whole, sliced = runs
  for (a_state, a_valid), (b_state, b_valid) in zip(whole[:2], sliced[:2]):
    assert a_valid.any()
    np.testing.assert_array_equal(a_valid, b_valid)
    np.testing.assert_array_equal(np.where(a_valid, a_state, -1), np.where(b_valid, b_state, -1))
  assert whole[2:] == sliced[2:]
