"""DCD's opt-in refresh paths against the default one and NumPy oracles: the device backend
(`--dcd_refresh_backend=device`, run here on CPU), the NumPy draws (`--dcd_draws=numpy`) and the
background refresh (`--dcd_background`), resumed after a kill too."""

import os
import signal

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from conftest import FixedScores, read_metrics, subprocess_env, trainer_args
from test_resume import COMMON, kill_after, run, weights
from tfkd import models, resume
from tfkd.distill import DCDConfig, Distiller, RRDConfig, dcd_side, refresh_device, samplers
from tfkd.distill import teacher as teacher_lib
from tfkd.distill.dcd import CANDIDATES, DCD, BackgroundRefresh


def make_method(d, teacher, student, **kw):
  kw = dict(dict(top=20, item_top=15, num_under=5, num_over=5, item_num_under=4,
                 item_num_over=3, chunk_size=16), **kw)
  method = DCD(DCDConfig(rrd=RRDConfig(top=20, num_interesting=4, num_uninteresting=4), **kw))
  teacher = teacher if hasattr(teacher, "score_all") else FixedScores(teacher)
  student = student if hasattr(student, "score_all") else FixedScores(student)
  method.setup(d, student, teacher,
               {"user_topk": teacher_lib.user_topk(teacher, d, method.user_k),
                "item_topk": teacher_lib.item_topk(teacher, d, method.item_k)})
  return method


def lists(method):
  """Each side's lists (invalid entries as -1) and validity."""
  return [(np.where(s.valid.numpy(), s.state.numpy(), -1), s.valid.numpy())
          for s in method.sides()]


def assert_same_lists(a, b):
  for (state_a, valid_a), (state_b, valid_b) in zip(a, b, strict=True):
    np.testing.assert_array_equal(valid_a, valid_b)
    np.testing.assert_array_equal(state_a, state_b)


def matrices(d, seed, count=2):
  rng = np.random.default_rng(seed)
  shape = (d.num_users, d.num_items)
  teacher = rng.normal(size=shape).astype(np.float32)
  students = [np.round(rng.normal(size=shape) * 2).astype(np.float32) for _ in range(count)]
  return teacher, students  # the students' scores have many ties


def oracle(side, teacher, student, candidates, top):
  """The candidates of every row and their ranks, from masked score matrices by counting."""
  t, s = (np.asarray(side.ops.scores(side.scorer, m, np.arange(side.scorer.num_rows)),
                     np.float64) for m in (teacher, student))
  count = lambda m, b, cols: np.array([np.sum(m[b] > m[b, c]) for c in cols])
  by_order = lambda m, b: np.argsort(np.argsort(-m[b], kind="stable"), kind="stable")
  out = []
  for b, t_top in enumerate(side.topk):
    if candidates == "teacher_top":
      out.append((t_top, np.arange(top), count(s, b, t_top), np.ones(top, bool)))
    elif candidates == "union":  # student-top entries: their position; teacher rank by counting
      s_top = np.argsort(-s[b], kind="stable")[:top]
      rt_s = count(t, b, s_top)
      out.append((np.concatenate([t_top, s_top]), np.concatenate([np.arange(top), rt_s]),
                  np.concatenate([count(s, b, t_top), np.arange(top)]),
                  np.concatenate([np.ones(top, bool), rt_s >= top])))
    else:  # every column, ranks with ties by column
      out.append((np.arange(s.shape[1]), by_order(t, b), by_order(s, b), np.isfinite(s[b])))
  return [np.stack(a) for a in zip(*out)], s


@pytest.mark.parametrize("candidates", CANDIDATES)
def test_device_candidates_equal_the_host_ones_and_the_counting_oracle(tiny, candidates):
  teacher, (student,) = matrices(tiny, 0, 1)
  got = {}
  for backend in ("numpy", "device"):
    method = make_method(tiny, teacher, student, candidates=candidates, refresh_backend=backend,
                         cache_bytes=0)
    for side in method.sides():
      rows = np.arange(side.scorer.num_rows, dtype=np.int32)
      scores = side.ops.scores(side.scorer, method.student, rows)
      assert isinstance(scores, tf.Tensor) == (backend == "device")
      got[backend, side.name] = [np.asarray(a) for a in
                                 side._candidates(scores, method.teacher, rows)]
  for side in method.sides():
    host, device = got["numpy", side.name], got["device", side.name]
    for a, b in zip(host, device, strict=True):
      np.testing.assert_array_equal(a, b)
    expected, s = oracle(side, method.teacher, method.student, candidates, side.top)
    for a, b in zip(host[:4], expected, strict=True):
      np.testing.assert_array_equal(a, b)
    n = min(50, side.top)  # Fig. 1a: |R_S - R_T| over the teacher's top n, counting ranks
    gap = [np.abs([np.sum(s[b] > s[b, c]) for c in t_top[:n]] - np.arange(n))
           for b, t_top in enumerate(side.topk)]
    np.testing.assert_array_equal(host[4], np.array(gap, np.float32))


@pytest.mark.parametrize("candidates", CANDIDATES)
@pytest.mark.parametrize("draws", ["tf", "numpy"])
def test_device_refreshes_draw_the_host_lists(tiny, candidates, draws):
  """Same seeds, same lists, over refreshes of changing students (the union's kept teacher
  ranks built by the first), sampled draws."""
  teacher, students = matrices(tiny, 1, 2)
  runs = {}
  for backend in ("numpy", "device"):
    method = make_method(tiny, teacher, students[0], candidates=candidates, draws=draws,
                         refresh_backend=backend)
    runs[backend] = []
    for epoch, s in ((0, students[0]), (1, students[1]), (2, students[0])):
      method.student = FixedScores(s)
      method.refresh(epoch)
      runs[backend].append((lists(method), method.refreshes[-1]["user_discrepancy"],
                            method.refreshes[-1]["item_discrepancy"]))
    runs[backend].append([s.teacher_ranks for s in method.sides()])
  for a, b in zip(runs["numpy"][:-1], runs["device"][:-1], strict=True):
    assert_same_lists(a[0], b[0])
    assert a[1:] == b[1:]
    assert any(valid.any() for _, valid in a[0])
  for a, b in zip(runs["numpy"][-1], runs["device"][-1]):
    assert (a is None) == (b is None) == (candidates != "union")
    np.testing.assert_array_equal(a, b)


def test_auto_backend_is_the_device_one_only_when_tf_sees_a_gpu(monkeypatch):
  assert refresh_device.resolve("auto") == "numpy"  # this CPU-only machine
  monkeypatch.setattr(tf.config, "list_logical_devices",
                      lambda kind=None: ["/GPU:0"] if kind == "GPU" else [])
  assert refresh_device.resolve("auto") == "device"
  assert refresh_device.resolve("numpy") == "numpy"
  with pytest.raises(ValueError, match="backend must be one of"):
    refresh_device.resolve("tpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_draws_follow_the_weights_exactly(dtype):
  # Two successive draws without replacement: P(i, then j) = w_i / W * w_j / (W - w_i).
  w = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 0.0], dtype)
  n = 40000
  idx, valid = samplers.weighted_without_replacement_np(np.tile(w, (n, 1)), 2,
                                                        np.random.default_rng(3))
  assert idx.dtype == np.int32 and valid.all() and not np.isin(idx, [0, 5]).any()
  pairs = [(i, j) for i in range(1, 5) for j in range(1, 5) if i != j]
  observed = [np.sum((idx[:, 0] == i) & (idx[:, 1] == j)) for i, j in pairs]
  p, total = w.astype(np.float64), float(w.sum())
  expected = [n * p[i] / total * p[j] / (total - p[i]) for i, j in pairs]
  assert sum(observed) == n
  assert scipy.stats.chisquare(observed, expected).pvalue > 1e-3
  # Fewer positive weights than k: the positive ones first, the rest marked invalid.
  idx, valid = samplers.weighted_without_replacement_np(np.array([[0, 1, 0, 2.0]], dtype), 3,
                                                        np.random.default_rng(0))
  assert set(idx[0, :2].tolist()) == {1, 3} and valid[0].tolist() == [True, True, False]
  det, ok = samplers.weighted_without_replacement_np(np.array([[0, 4, 1, 4, 3.0]], dtype), 3,
                                                     None, deterministic=True)
  assert det[0].tolist() == [1, 3, 4] and ok.all()  # the largest, ties by column


@pytest.mark.parametrize("seed", range(4))
def test_top_k_indices_is_tf_top_k(seed):
  rng = np.random.default_rng(seed)
  values = rng.integers(-3, 4, size=(9, 30)).astype(np.float32)  # ties at every k
  values[rng.random(values.shape) < 0.3] = -np.inf
  values[0] = -np.inf
  for k in range(31):
    got = samplers.top_k_indices(values, k)
    assert got.shape == (9, k) and got.dtype == np.int32
    np.testing.assert_array_equal(got, tf.math.top_k(values, k=k).indices.numpy())


def test_numpy_sample_draws_by_discrepancy_in_teacher_order():
  """`sample_numpy`: M_l among the valid under-estimated candidates with p ~ tanh(mu (R_S - R_T))
  (a chi-square test of the first of one draw), in teacher order, then M_h among the
  over-estimated ones; entries short of M_l / M_h are marked invalid; the seed decides."""
  mu, rows = 0.1, 30000
  rt = np.array([0, 1, 2, 3, 4, 5, 9, 20], np.int32)
  rs = np.array([6, 1, 12, 30, 2, 7, 3, 10], np.int32)  # diff 6, 0, 10, 27, -2, 2, -6, -10
  valid = np.array([1, 1, 1, 1, 1, 0, 1, 1], bool)  # the under-estimated entry 5 is not valid
  cand = np.arange(8, dtype=np.int32) + 100
  tile = lambda a: np.tile(a, (rows, 1))
  entries, ok = dcd_side.sample_numpy(tile(cand), tile(rt), tile(rs), tile(valid), mu, 1, 1,
                                      (7, 0), False)
  under = np.where(valid & (rs > rt), np.tanh(mu * (rs - rt)), 0.0)
  counts = np.bincount(entries[:, 0] - 100, minlength=8)
  assert ok.all() and set(np.flatnonzero(counts)) <= set(np.flatnonzero(under))
  assert scipy.stats.chisquare(counts[under > 0], rows * under[under > 0] / under.sum()).pvalue \
      > 1e-3
  assert set(entries[:, 1].tolist()) <= {104, 106, 107}  # over-estimated and valid
  entries, ok = dcd_side.sample_numpy(tile(cand)[:50], tile(rt)[:50], tile(rs)[:50],
                                      tile(valid)[:50], mu, 5, 4, (7, 0), False)
  assert ok[:, :3].all() and not ok[:, 3:5].any() and ok[:, 5:8].all() and not ok[:, 8].any()
  assert (entries[:, :3] == [100, 102, 103]).all()  # every under-estimated one, teacher order
  assert {frozenset(e) for e in entries[:, 5:8].tolist()} == {frozenset([104, 106, 107])}
  one = lambda seed: dcd_side.sample_numpy(cand[None], rt[None], rs[None], valid[None], mu, 2, 1,
                                           seed, False)[0][0].tolist()
  assert one((7, 3)) == one((7, 3))
  assert len({tuple(one((s, 3))) for s in range(40)}) > 1


@pytest.mark.parametrize("every, draws, candidates, parts", [(1, "tf", "union", 1),
                                                              (2, "numpy", "teacher_top", 1),
                                                              (1, "numpy", "union", 3)])
def test_background_refresh_draws_the_inline_lists_one_epoch_later(tiny, monkeypatch, every,
                                                                   draws, candidates, parts):
  """The refresh begun at epoch e takes the student's scores then (the student after epoch
  e - 1), ranks and draws while the student trains, and its lists, those the inline refresh
  draws from the same scores and seed, are assigned when epoch e ends: epoch e reads those of
  the last refresh before it (epoch 0's for epochs 0 .. every)."""
  monkeypatch.setattr(dcd_side, "_SCORE_BYTES", 3 * max(tiny.num_users, tiny.num_items) * 4)
  teacher, students = matrices(tiny, 2, 6)
  kw = dict(candidates=candidates, draws=draws, refresh_every=every, refresh_parts=parts)
  inline, background = (make_method(tiny, teacher, students[0], background=b, **kw)
                        for b in (False, True))
  expected = {}
  for e in range(0, 5, every):
    inline.student = FixedScores(students[e])
    inline.refresh(e)
    expected[e] = lists(inline)
  callback = [c for c in background.callbacks() if isinstance(c, BackgroundRefresh)][0]
  for e in range(5):
    background.student = FixedScores(students[e])  # the student after epoch e - 1
    callback.on_epoch_begin(e)
    background.student = FixedScores(students[5])  # training moves the student meanwhile
    assert_same_lists(lists(background), expected[0 if e == 0 else every * ((e - 1) // every)])
    callback.on_epoch_end(e)
    assert_same_lists(lists(background), expected[every * (e // every)])
  strip = lambda r: {k: v for k, v in r.items() if not k.endswith("seconds")}
  assert [strip(r) for r in background.refreshes] == [strip(r) for r in inline.refreshes]
  assert ["background_seconds" in r for r in background.refreshes] == \
      [e > 0 for e in range(0, 5, every)]


def test_background_refresh_in_fit_assigns_the_lists_of_the_epochs_start(tiny):
  """In `fit`: the lists assigned at the end of epoch e are the inline refresh's from the
  student's weights at the start of epoch e, and they are what epoch e + 1 reads."""
  keras.utils.set_random_seed(0)
  build = lambda dim: models.build("bpr", tiny.num_users, tiny.num_items, dim=dim,
                                   init_stddev=0.3)
  teacher, student = build(16), build(4)
  kw = dict(candidates="union", user_weight=1.0, item_weight=1.0, refresh_every=1)
  method = make_method(tiny, teacher, student, background=True, **kw)
  distiller = Distiller(student, teacher, method)
  distiller.declare_parts()
  distiller.compile(optimizer=keras.optimizers.Adam(0.05))
  seen = {"weights": [], "begin": [], "end": []}

  class Probe(keras.callbacks.Callback):  # runs after the method's callbacks
    def on_epoch_begin(self, epoch, logs=None):
      seen["weights"].append(student.get_weights())
      seen["begin"].append(lists(method))

    def on_epoch_end(self, epoch, logs=None):
      seen["end"].append(lists(method))

  distiller.fit(student.make_train_dataset(tiny, 64, seed=0), epochs=3, verbose=0,
                callbacks=[Probe()])
  assert [r["epoch"] for r in method.refreshes] == [0, 1, 2]
  copy = build(4)
  inline = make_method(tiny, teacher, copy, **kw)
  for epoch in range(3):
    copy.set_weights(seen["weights"][epoch])
    inline.refresh(epoch)
    assert_same_lists(seen["end"][epoch], lists(inline))
    if epoch:
      assert_same_lists(seen["begin"][epoch], seen["end"][epoch - 1])
  assert not np.array_equal(seen["end"][1][0][0], seen["end"][2][0][0])  # the lists moved


def test_killed_background_run_resumes_to_the_same_result(tmp_path):
  """Killed while a background refresh may be pending: the checkpoint of epoch e holds the lists
  assigned at its end (those begun at epoch e), so the resumed run reads what the whole run
  reads. With refresh parts, the resumed run refreshes the part the whole run refreshes at each
  epoch (and rebuilds the union's kept teacher ranks it needs)."""
  # One run covers both: a background refresh pending at the kill, and a rolling part.
  refresh = ["--dcd_background", "--dcd_draws=numpy", "--dcd_refresh_parts=3"]
  extra = ["--method=dcd", "--epochs=10", "--refresh_every=1", *refresh, "--rrd_top=30",
           "--rrd_k=5", "--rrd_l=5", "--dcd_top=30", "--dcd_item_top=20", "--dcd_num_under=4",
           "--dcd_num_over=4", "--dcd_item_num_under=4", "--dcd_item_num_over=4", "--dcd_user_weight=1.0"]
  env = subprocess_env(tmp_path)
  args = trainer_args(tmp_path, "trainers.distill", [*COMMON, *extra])
  whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
  r = run([*args, f"--workdir={whole}"], env)
  assert r.returncode == 0, r.stderr[-3000:]
  proc = run([*args, f"--workdir={broken}"], env, wait=False)
  killed_at = kill_after(proc, broken, epoch=4)
  assert proc.returncode == -signal.SIGKILL
  r = run([*args, f"--workdir={broken}"], env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"resuming {broken} after epoch {killed_at}" in r.stderr
  assert not os.path.exists(os.path.join(broken, resume.FILE))
  a, b = read_metrics(whole), read_metrics(broken)
  assert a["test"] == b["test"] and a["valid"] == b["valid"]
  keys = ("epoch", "user_discrepancy", "item_discrepancy")
  assert [[r[k] for k in keys] for r in a["refreshes"]] == \
      [[r[k] for k in keys] for r in b["refreshes"]]
  assert all("background_seconds" in r for r in a["refreshes"][1:])
  wa, wb = weights(whole), weights(broken)
  assert wa.keys() == wb.keys()
  for name in wa:
    np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


@pytest.mark.parametrize("candidates", ["union", "teacher_top"])
def test_refresh_parts_recompute_one_interleaved_part_as_a_whole_refresh_would(tiny, candidates):
  """With N parts, the first refresh draws every row's lists and refresh k >= 1 those of rows
  (k - 1) mod N, N + (k - 1) mod N, ...: each equal to a whole refresh of the same student (the
  largest errors, so the draws do not depend on the chunk); the other rows keep their lists, and
  the logged discrepancy is the mean over the part's rows (a NumPy count of the ranks)."""
  teacher, students = matrices(tiny, 4, 5)
  kw = dict(candidates=candidates, deterministic=True, refresh_every=2)
  parted = make_method(tiny, teacher, students[0], refresh_parts=3, **kw)
  whole = make_method(tiny, teacher, students[0], **kw)
  expected = None
  for k in range(5):
    for m in (parted, whole):
      m.student = FixedScores(students[k])
      m.refresh(2 * k)
    fresh = lists(whole)
    expected = fresh if k == 0 else expected
    for side, (state, valid), (new_state, new_valid) in zip(parted.sides(), expected, fresh):
      due = parted.rows_due(side, 2 * k)
      assert (due is None) == (k == 0)
      rows = np.arange(side.scorer.num_rows)
      due = rows if due is None else due
      np.testing.assert_array_equal(due, rows[rows % 3 == (k - 1) % 3] if k else rows)
      state[due], valid[due] = new_state[due], new_valid[due]
      s = np.asarray(side.scorer.scores(FixedScores(students[k]), rows), np.float64)
      n = min(50, side.top)
      gap = [np.abs([np.sum(s[b] > s[b, c]) for c in side.topk[b, :n]] - np.arange(n)).mean()
             for b in due]
      assert parted.refreshes[-1][f"{side.name}_discrepancy"] == pytest.approx(np.mean(gap))
    assert_same_lists(lists(parted), expected)
    assert k == 0 or not all(np.array_equal(a[0], b[0]) for a, b in zip(lists(parted), fresh))
