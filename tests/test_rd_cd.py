"""RD and CD: samplers against their stated probabilities, losses against NumPy, the methods'
draws and loss parts against oracles, and the entry point."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from absl.testing import flagsaver

from conftest import REPO, FixedScores, subprocess_env, teacher_flagfile
from tfkd import models
from tfkd.distill import CDConfig, Forward, RDConfig, losses, losses_impl, samplers
from tfkd.distill import teacher as teacher_lib
from tfkd.distill.cd import CD
from tfkd.distill.rd import RD, estimated_ranks
from tfkd.models import lists as model_lists
from tfkd.models.base import selective_log_loss
from trainers import distill


def softplus(x):
  return np.logaddexp(0.0, x)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


# -- rank-aware sampling ----------------------------------------------------------------------

@pytest.mark.parametrize("scheme,slope", [("uniform", 1.0), ("linear", 1.0),
                                          ("exponential", 0.3), ("exponential", 0.05)])
def test_rank_aware_frequencies_match_stated_probabilities(scheme, slope):
  n, rows, width = 40, 500, 200  # 100,000 draws
  positions = samplers.rank_aware_positions(tf.fill([rows], n), width, scheme, slope,
                                            tf.constant([3, 4], tf.int64)).numpy()
  counts = np.bincount(positions.ravel(), minlength=n)
  assert len(counts) == n  # nothing outside [0, n)
  expected = samplers.rank_aware_probabilities(n, scheme, slope).numpy() * positions.size
  keep = expected >= 5  # chi-square needs expected counts >= 5: pool the sparse tail
  observed = np.append(counts[keep], counts[~keep].sum())
  expected = np.append(expected[keep], expected[~keep].sum())
  if observed[-1] == 0 and expected[-1] < 1e-9:
    observed, expected = observed[:-1], expected[:-1]
  assert scipy.stats.chisquare(observed, expected).pvalue > 1e-3


def test_chi_square_tells_linear_from_uniform():
  # The test above can fail: linear draws judged against uniform probabilities are rejected.
  n = 40
  positions = samplers.rank_aware_positions(tf.fill([500], n), 200, "linear", 1.0,
                                            tf.constant([3, 4], tf.int64)).numpy()
  counts = np.bincount(positions.ravel(), minlength=n)
  assert scipy.stats.chisquare(counts, np.full(n, positions.size / n)).pvalue < 1e-10


def test_rank_aware_probabilities_closed_form():
  n = 9
  k = np.arange(n)
  lin = samplers.rank_aware_probabilities(n, "linear").numpy()
  np.testing.assert_allclose(lin, (1 - (k + 0.5) / n) / np.sum(1 - (k + 0.5) / n))
  exp = samplers.rank_aware_probabilities(n, "exponential", 0.2).numpy()
  np.testing.assert_allclose(exp, np.exp(-k / n / 0.2) / np.sum(np.exp(-k / n / 0.2)))
  np.testing.assert_allclose(samplers.rank_aware_probabilities(n, "uniform").numpy(), 1 / n)


def test_rank_aware_positions_respect_each_rows_count():
  counts = tf.constant([1, 2, 7, 0])
  pos = samplers.rank_aware_positions(counts, 300, "exponential", 0.5,
                                      tf.constant([1, 1], tf.int64)).numpy()
  assert (pos[0] == 0).all() and set(pos[1]) == {0, 1} and pos[2].max() <= 6
  assert (pos[3] == 0).all()
  with pytest.raises(ValueError, match="scheme"):
    samplers.rank_aware_positions(counts, 3, "quadratic", 1.0, tf.constant([1, 1], tf.int64))


# -- losses -----------------------------------------------------------------------------------

def test_soft_target_bce_matches_numpy_and_masks():
  rng = np.random.default_rng(0)
  s, t = rng.normal(0, 3, (4, 6)), rng.normal(0, 3, (4, 6))
  mask = rng.random((4, 6)) > 0.3
  mask[3] = False
  q = sigmoid((t - 1.0) / 2.0)
  bce = -(q * np.log(sigmoid(s)) + (1 - q) * np.log(1 - sigmoid(s)))
  want = np.array([bce[b][mask[b]].mean() if mask[b].any() else 0.0 for b in range(4)])
  got = losses_impl.soft_target_bce(tf.constant(s), tf.constant(t), 2.0, 1.0, mask).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-10)
  np.testing.assert_allclose(losses_impl.soft_target_bce(tf.constant(s), tf.constant(t)).numpy(),
                             (-(sigmoid(t) * np.log(sigmoid(s)) +
                                (1 - sigmoid(t)) * np.log(1 - sigmoid(s)))).mean(1), rtol=1e-10)
  # Stable at large logits: softplus forms, never log(0).
  big = losses_impl.soft_target_bce(tf.constant([[100.0, -100.0]]), tf.constant([[-100.0, 100.0]]))
  np.testing.assert_allclose(big.numpy(), [100.0], rtol=1e-6)


def test_rd_losses_match_numpy():
  w = losses_impl.rd_position_weights(5, 2.0).numpy()
  r = np.arange(1, 6)
  np.testing.assert_allclose(w, np.exp(-r / 2.0) / np.exp(-r / 2.0).sum(), rtol=1e-6)
  s = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
  weights = np.array([[0.5, 0.3, 0.2], [0.1, 0.0, 0.9]])
  np.testing.assert_allclose(losses_impl.weighted_log_sigmoid_nll(tf.constant(s), weights).numpy(),
                             (weights * -np.log(sigmoid(s))).sum(1), rtol=1e-10)


def test_keras_losses_registered_and_serializable():
  bce = losses.get("soft_target_bce", alpha=2.0, beta=1.0)
  back = keras.losses.deserialize(keras.losses.serialize(bce))
  assert isinstance(back, losses.SoftTargetBCE) and (back.alpha, back.beta) == (2.0, 1.0)
  s, t = np.array([[0.3, -1.0]], np.float32), np.array([[2.0, -3.0]], np.float32)
  np.testing.assert_allclose(float(back(t, s)),
                             losses_impl.soft_target_bce(s, t, 2.0, 1.0).numpy().mean(), rtol=1e-6)
  rd = losses.get("weighted_log_sigmoid")
  np.testing.assert_allclose(float(rd(np.array([[0.25, 0.75]]), np.array([[0.0, 1.0]]))),
                             0.25 * np.log(2) + 0.75 * softplus(-1.0), rtol=1e-6)
  assert {"soft_target_bce", "weighted_log_sigmoid"} <= set(losses.keys())
  with pytest.raises(ValueError, match="alpha"):
    losses.SoftTargetBCE(alpha=0.0)


def test_estimated_ranks_closed_form():
  top = tf.constant([[5.0, 0.0]])
  samples = tf.constant([[6.0, 1.0, -1.0, 4.0]])  # 1 above 5.0; 3 above 0.0
  np.testing.assert_array_equal(estimated_ranks(top, samples, 101).numpy(), [[25.0, 75.0]])


# -- the methods ------------------------------------------------------------------------------

def bpr_pair(d, dim=4):
  keras.utils.set_random_seed(0)
  teacher = models.build("bpr", d.num_users, d.num_items, dim=16, init_stddev=0.3)
  student = models.build("bpr", d.num_users, d.num_items, dim=dim, init_stddev=0.3)
  return teacher, student


def first_batch(d, size=64):
  from tfkd.data import pipelines
  return next(iter(pipelines.pairwise(d, size, seed=0)))


def test_rd_loss_parts_match_numpy(tiny):
  teacher, student = bpr_pair(tiny)
  config = RDConfig(top=6, lam=2.0, weight=0.3, dynamic_start=2, mu=0.5, num_samples=50)
  method = RD(config)
  knowledge = {"user_topk": teacher_lib.user_topk(teacher, tiny, method.user_k)}
  method.setup(tiny, student, teacher, knowledge)
  x = first_batch(tiny)
  users = np.unique(x["user"].numpy())
  all_scores = student.score_all(tf.range(tiny.num_users)).numpy()
  top = knowledge["user_topk"][users, :6]
  s = np.take_along_axis(all_scores[users], top, 1)
  static = np.exp(-np.arange(1, 7) / 2.0)
  static /= static.sum()
  want = 0.3 * np.mean((static * softplus(-s)).sum(1))
  np.testing.assert_allclose(float(method.loss_parts(student, x)["rd_loss"]), want, rtol=1e-5)
  # The student's own loss enters with weight 1 - 0.3.
  y_pred = student(x)
  np.testing.assert_allclose(
      float(method.loss_parts(student, x, Forward(y_pred))["cf_loss"]),
      0.7 * float(student.compute_loss(x=x, y_pred=y_pred)), rtol=1e-6)
  # From dynamic_start on, each weight is multiplied by tanh(max(mu (R^ - r), 0)) in [0, 1).
  method.epoch.assign(2)
  dyn = float(method.loss_parts(student, x)["rd_loss"])
  assert 0.0 <= dyn < want


def test_rd_dynamic_weights_follow_the_rank_estimate(tiny):
  # A student scoring every item 1.0: each of the 20 sampled items scores above a top item iff
  # that item scores below 1, so the estimates are exact: 0, I - 1, I - 1.
  teacher, _ = bpr_pair(tiny)
  student = FixedScores(np.ones((tiny.num_users, tiny.num_items)))
  method = RD(RDConfig(top=3, lam=1.0, dynamic_start=4, mu=0.1, num_samples=20))
  method.setup(tiny, student, teacher, {"user_topk": teacher_lib.user_topk(teacher, tiny, 3)})
  top_scores = tf.constant([[10.0, 0.0, -10.0]])
  static = np.exp(-np.arange(1, 4)) / np.exp(-np.arange(1, 4)).sum()
  w = method.weights(student, tf.constant([0]), top_scores).numpy()
  np.testing.assert_allclose(w[0], static, rtol=1e-6)  # before dynamic_start
  method.epoch.assign(4)
  w = method.weights(student, tf.constant([0]), top_scores).numpy()
  est = np.array([0, tiny.num_items - 1, tiny.num_items - 1])
  np.testing.assert_allclose(w[0], static * np.tanh(np.maximum(0.1 * (est - np.arange(3)), 0)),
                             rtol=1e-6)


def cd_setup(d, teacher, student, **kw):
  method = CD(CDConfig(**kw))
  method.setup(d, student, teacher, {})
  return method


def test_cd_draws_unobserved_items_with_teacher_logits(tiny):
  rng = np.random.default_rng(1)
  t = rng.normal(size=(tiny.num_users, tiny.num_items))
  for guide in ("uniform", "teacher", "student"):
    method = cd_setup(tiny, FixedScores(t), FixedScores(-t), guide=guide, sample_ratio=0.5)
    method.refresh(0)
    items, targets, valid = (v.numpy() for v in (method.lists, method.targets, method.valid))
    indptr, observed = tiny.train_csr()
    positives = np.diff(indptr)
    np.testing.assert_array_equal(valid.sum(1), np.ceil(0.5 * positives))
    for u in range(tiny.num_users):
      seen = set(observed[indptr[u]:indptr[u + 1]])
      assert not seen & set(items[u][valid[u]])
    np.testing.assert_allclose(targets[valid], np.take_along_axis(t, items, 1)[valid], rtol=1e-6)


def test_cd_guides_rank_the_samples(tiny):
  # With a steep exponential scheme nearly every draw is the guide's best unobserved item.
  rng = np.random.default_rng(2)
  t = rng.normal(size=(tiny.num_users, tiny.num_items))
  s = rng.normal(size=(tiny.num_users, tiny.num_items))
  indptr, observed = tiny.train_csr()
  mask = np.zeros_like(t, bool)
  mask[np.repeat(np.arange(tiny.num_users), np.diff(indptr)), observed] = True
  for guide, scores in (("teacher", t), ("student", s)):
    method = cd_setup(tiny, FixedScores(t), FixedScores(s), guide=guide, scheme="exponential",
                      slope=1e-4, sample_size=5)
    method.refresh(0)
    best = np.where(mask, -np.inf, scores).argmax(1)
    assert np.mean(method.lists.numpy() == best[:, None]) > 0.99


def test_cd_uniform_guide_is_uniform_over_unobserved(tiny):
  method = cd_setup(tiny, FixedScores(np.zeros((tiny.num_users, tiny.num_items))),
                    FixedScores(np.zeros((tiny.num_users, tiny.num_items))), guide="uniform",
                    sample_size=400)
  counts = np.zeros(tiny.num_items)
  for epoch in range(5):
    method.refresh(epoch)
    counts += np.bincount(method.lists.numpy()[0], minlength=tiny.num_items)
  indptr, observed = tiny.train_csr()
  seen = observed[indptr[0]:indptr[1]]
  assert counts[seen].sum() == 0
  unseen = np.setdiff1d(np.arange(tiny.num_items), seen)
  assert scipy.stats.chisquare(counts[unseen]).pvalue > 1e-3
  # Another epoch's seed gives another draw; the same epoch the same one.
  method.refresh(3)
  again = method.lists.numpy().copy()
  method.refresh(3)
  np.testing.assert_array_equal(method.lists.numpy(), again)


@pytest.mark.parametrize("guide", ["teacher", "uniform", "student"])
def test_cd_cached_order_gives_the_same_draws(tiny, guide):
  """The fixed guides keep their order between draws, the student's guide the teacher's rows
  only; the draws are those of recomputing everything (chunks of 3 users: several cache
  entries), and a student whose scores change between draws changes the student guide's draws."""
  rng = np.random.default_rng(4)
  t = rng.normal(size=(tiny.num_users, tiny.num_items))
  cached, fresh = (cd_setup(tiny, FixedScores(t), FixedScores(t), guide=guide, sample_ratio=0.5,
                            chunk_size=3, cache_bytes=b) for b in (1 << 30, 0))
  draws = []
  for epoch in range(3):
    student = rng.normal(size=t.shape)
    for method in (cached, fresh):
      method.student = FixedScores(student)
      method.refresh(0)  # the same seed every time: only the student's scores change the draw
    for a, b in zip(cached.state_variables(), fresh.state_variables()):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
    draws.append(cached.lists.numpy().copy())
  assert fresh._cache is None
  assert len(cached._cache) == -(-tiny.num_users // 3)
  changed = [not np.array_equal(draws[0], d) for d in draws[1:]]
  assert changed == [guide == "student"] * 2


def test_cd_loss_parts_match_numpy(tiny):
  teacher, student = bpr_pair(tiny)
  method = cd_setup(tiny, teacher, student, guide="student", sample_ratio=0.8, alpha=2.0,
                    beta=1.0, weight=0.4)
  method.refresh(0)
  x = first_batch(tiny)
  users, counts = np.unique(x["user"].numpy(), return_counts=True)
  items = method.lists.numpy()[users]
  valid = method.valid.numpy()[users]
  s = np.take_along_axis(student.score_all(tf.constant(users)).numpy(), items, 1)
  t = np.take_along_axis(teacher.score_all(tf.constant(users)).numpy(), items, 1)
  q = sigmoid((t - 1.0) / 2.0)
  bce = q * softplus(-s) + (1 - q) * softplus(s)
  # Per user: the sum over its sample, weighted by its share c_u / n_u of the batch; / batch.
  n = np.bincount(tiny.train_users, minlength=tiny.num_users)[users]
  want = 0.4 * np.sum(counts / n * [bce[b][valid[b]].sum() for b in range(len(users))]) / 64
  np.testing.assert_allclose(float(method.loss_parts(student, x)["cd_loss"]), want, rtol=1e-5)
  # L_CF: selective cross-entropy over the observed items only, plus the student's penalty.
  y_pred = student(x)
  cf = method.loss_parts(student, x, Forward(y_pred))["cf_loss"]
  np.testing.assert_allclose(
      float(cf), 0.6 * np.mean(softplus(-y_pred.numpy()[:, 0])) + float(student.regularization(x)),
      rtol=1e-5)
  method.config.cf_loss = "full"
  np.testing.assert_allclose(
      float(method.loss_parts(student, x, Forward(y_pred))["cf_loss"]),
      0.6 * float(student.compute_loss(x=x, y_pred=y_pred)), rtol=1e-6)
  np.testing.assert_allclose(float(selective_log_loss(y_pred)),
                             np.mean(softplus(-y_pred.numpy()[:, 0])), rtol=1e-6)


def test_cd_training_pass_equals_the_clean_one_for_a_deterministic_student(tiny):
  # kd_pass "training": forward appends each row's user's sample to its items; L_KD read from
  # those columns (one copy per row, weight 1 / n_u) equals the clean path's per-user sum when
  # the student's training pass is deterministic (BPR), and L_CF sees only the own columns.
  teacher, student = bpr_pair(tiny)
  method = cd_setup(tiny, teacher, student, guide="teacher", sample_ratio=0.8, weight=0.4,
                    kd_pass="training")
  method.refresh(0)
  x = first_batch(tiny)
  out = method.forward(student, x)
  own = x["item"].shape[1]
  y_pred = tf.concat([out.scores, out.list_scores], axis=1)
  assert y_pred.shape[1] == own + method.lists.shape[1]
  np.testing.assert_allclose(
      y_pred.numpy()[:, own:],
      student.score(x["user"], tf.gather(method.lists, x["user"])).numpy(), rtol=1e-6)
  np.testing.assert_allclose(float(method.loss_parts(student, x, out)["cd_loss"]),
                             float(method.loss_parts(student, x)["cd_loss"]), rtol=1e-5)
  np.testing.assert_allclose(
      float(method.loss_parts(student, x, out)["cf_loss"]),
      float(method.loss_parts(student, x, Forward(y_pred[:, :own]))["cf_loss"]), rtol=1e-6)


@pytest.mark.parametrize("corruption", [0.0, 0.5])
def test_cd_training_pass_scores_the_sample_from_the_corrupted_row(tiny, corruption):
  keras.utils.set_random_seed(0)
  teacher = models.build_for("cdae", tiny, dim=8)
  student = models.build_for("cdae", tiny, dim=4, corruption=corruption, init_stddev=0.5)
  method = cd_setup(tiny, teacher, student, guide="teacher", sample_ratio=0.8,
                    kd_pass="training")
  method.refresh(0)
  x = first_batch(tiny)
  users = x["user"].numpy()
  valid = tf.gather(method.valid, users).numpy()
  out = method.forward(student, x)
  assert out.where is not None  # narrow lists (width 8 of 120 items): valid entries only
  kd = np.full(valid.shape, np.nan, np.float32)
  kd[valid] = out.list_scores.numpy()
  clean = student.score(x["user"], tf.gather(method.lists, x["user"])).numpy()
  twice = np.flatnonzero(users == users[np.argmax(np.bincount(users))])
  assert len(twice) >= 2  # one corruption per user and step: its rows score alike
  np.testing.assert_allclose(kd[twice[0]], kd[twice[1]], rtol=1e-6)
  if corruption == 0.0:
    np.testing.assert_allclose(kd[valid], clean[valid], rtol=1e-5, atol=1e-6)
  else:  # the corrupted rows' scores, not the clean ones
    assert np.abs(kd[valid] - clean[valid]).max() > 1e-3


def test_cdae_pairs_pass_equals_the_dense_lists_pass(tiny):
  # Narrow padded lists are scored as their valid entries only: the same scores (same
  # corruption draw) as the dense pass's valid entries, the same gradient, and the same L_KD.
  keras.utils.set_random_seed(0)
  teacher = models.build_for("cdae", tiny, dim=8)
  student = models.build_for("cdae", tiny, dim=4, corruption=0.5, init_stddev=0.5)
  method = cd_setup(tiny, teacher, student, guide="teacher", sample_ratio=0.8, weight=0.3,
                    kd_pass="training")
  method.refresh(0)
  # Rows of unequal length, as padding to the widest user's makes them: keep a random prefix.
  keep = np.arange(method.valid.shape[1]) <= np.random.default_rng(0).integers(
      0, method.valid.shape[1], method.valid.shape[0])[:, None]
  method.valid.assign(method.valid.numpy() & keep)
  method.positives = tf.constant(np.random.default_rng(1).integers(5, 50, tiny.num_users),
                                 tf.float32)  # users of unequal weight 1 / n_u
  x = first_batch(tiny)
  users = tf.cast(x["user"], tf.int32)
  lists, valid = tf.gather(method.lists, users), tf.gather(method.valid, users)
  assert student.lists_as_pairs(lists.shape[1]) and not bool(tf.reduce_all(valid))
  state = student.seed_generator.state.numpy()

  def run(fn):
    student.seed_generator.state.assign(state)
    with tf.GradientTape() as tape:
      own, pairs, y_pred = fn()
      loss = (tf.reduce_sum(tf.sin(own)) + tf.reduce_sum(tf.cos(pairs)) +
              method.loss_parts(student, x, y_pred)["cd_loss"])
    return ([own.numpy(), pairs.numpy(), float(method.loss_parts(student, x, y_pred)["cd_loss"])],
            [tf.convert_to_tensor(g).numpy()
             for g in tape.gradient(loss, student.trainable_variables)])

  def pairs_pass():
    out = method.forward(student, x)
    return out.scores, out.list_scores, out

  def dense_pass():
    y = student.call_with_lists(x, lists, training=True)
    own = x["item"].shape[1]
    return y[:, :own], tf.boolean_mask(y[:, own:], valid), Forward(y[:, :own], y[:, own:])

  got, got_grads = run(pairs_pass)
  want, want_grads = run(dense_pass)
  assert got[1].shape == (int(tf.reduce_sum(tf.cast(valid, tf.int32))),)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(  # the own columns alone make L_CF
      float(method.loss_parts(student, x, Forward(tf.constant(want[0]), None))["cf_loss"]),
      float(method.loss_parts(student, x, Forward(tf.constant(want[0])))["cf_loss"]), rtol=1e-6)


@pytest.mark.parametrize("width", [3, 40])
def test_cdae_lists_pass_equals_one_call_over_the_widened_items(tiny, width):
  # CDAE reads wide lists from each distinct user's full decoded row; narrow ones go through the
  # default. Either way: the same numbers as one call over [own items, lists] with the same
  # corruption draw, and the same gradient.
  keras.utils.set_random_seed(0)
  student = models.build_for("cdae", tiny, dim=4, corruption=0.5, init_stddev=0.5)
  x = first_batch(tiny)
  rng = np.random.default_rng(0)
  lists = tf.constant(rng.integers(0, tiny.num_items, (len(x["user"]), width)), tf.int32)
  assert student.reads_full_rows(width) == (width == 40)
  state = student.seed_generator.state.numpy()

  def run(fn):
    student.seed_generator.state.assign(state)
    with tf.GradientTape() as tape:
      out = fn()
      loss = tf.reduce_sum(tf.sin(out))
    return out.numpy(), [tf.convert_to_tensor(g).numpy()  # IndexedSlices made dense
                         for g in tape.gradient(loss, student.trainable_variables)]

  got, got_grads = run(lambda: student.call_with_lists(x, lists, training=True))
  items = tf.concat([tf.cast(x["item"], tf.int32), lists], axis=1)
  want, want_grads = run(lambda: student({**x, "item": items}, training=True))
  assert got.shape == (len(x["user"]), x["item"].shape[1] + width)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_cd_training_pass_scores_caser_samples_in_each_examples_context(tiny):
  # Caser's training rows carry their own previous items ("seq"): the sample is scored in that
  # context (dropout off here, so exactly student(x with the sample as items)).
  keras.utils.set_random_seed(0)
  teacher = models.build_for("caser", tiny, dim=8)
  student = models.build_for("caser", tiny, dim=4, dropout=0.0)
  method = cd_setup(tiny, teacher, student, guide="teacher", sample_size=7, kd_pass="training")
  method.refresh(0)
  x = next(iter(student.make_train_dataset(tiny, 32, seed=0)))
  own = x["item"].shape[1]
  out = method.forward(student, x)
  y_pred = tf.concat([out.scores, out.list_scores], axis=1).numpy()
  lists = tf.gather(method.lists, x["user"])
  want = student({**x, "item": lists}, training=True).numpy()
  np.testing.assert_allclose(y_pred[:, own:], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y_pred[:, :own], student(x, training=True).numpy(), rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize("bad,message", [
    (dict(guide="oracle"), "guide"), (dict(sample_size=0, sample_ratio=0.0), "sample"),
    (dict(alpha=0.0), "alpha"), (dict(weight=1.5), "weight"),
    (dict(kd_pass="noisy"), "kd_pass"), (dict(cache_bytes=-1), "cache_bytes")])
def test_cd_config_refuses_bad_values(bad, message):
  from tfkd.errors import ConfigError
  with pytest.raises(ConfigError, match=message):
    CD(CDConfig(**bad))


def test_rd_refuses_top_larger_than_catalog(tiny):
  from tfkd.errors import ConfigError
  teacher, student = bpr_pair(tiny)
  with pytest.raises(ConfigError, match="exceeds"):
    RD(RDConfig(top=tiny.num_items + 1)).setup(tiny, student, teacher,
                                               {"user_topk": np.zeros((1, 1), np.int32)})


# -- the entry point --------------------------------------------------------------------------

TINY = dict(dataset="synthetic", num_candidates=40, epochs=3, eval_every=1, batch_size=256,
            dim=4, refresh_every=1)


@pytest.mark.parametrize("method,extra", [("rd", dict(rd_dynamic_start=1)),
                                          ("cd", dict(cd_guide="student")),
                                          ("cd", dict(cd_kd_pass="training"))])
def test_entry_point_runs_rd_and_cd(tmp_path, method, extra):
  workdir = str(tmp_path / "student")
  with flagsaver.flagsaver(workdir=workdir, teacher_dir=str(tmp_path / "teacher"),
                           teacher_flagfile=teacher_flagfile(tmp_path), method=method,
                           **TINY, **extra):
    distill.main(["distill"])
  with open(os.path.join(workdir, "metrics.json")) as f:
    metrics = json.load(f)
  assert 0 <= metrics["test"]["H@10"] <= 1
  if method == "cd":
    assert metrics["cd_draws"] == 3  # before each of the 3 epochs


def test_entry_point_refuses_impossible_cd_flags_in_one_line(tmp_path):
  env = subprocess_env(tmp_path)
  r = subprocess.run(
      [sys.executable, "-m", "trainers.distill", "--dataset=synthetic", "--num_candidates=10",
       "--method=cd", "--cd_sample_ratio=0", f"--teacher_dir={tmp_path}/t",
       f"--teacher_flagfile={teacher_flagfile(tmp_path)}", f"--workdir={tmp_path}/s"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 1
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("tfkd: error: ") and "sample_size or sample_ratio" in last
  assert not os.path.exists(os.path.join(tmp_path, "s", "metrics.json"))


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_score_lists_equals_score_for_wide_and_narrow_lists(tiny, name):
  model = models.build_for(name, tiny, dim=4)
  users = tf.constant([0, 3, 7])
  rng = np.random.default_rng(0)
  for width in (3, tiny.num_items // 2):  # below and above the 1/8-of-the-catalog switch
    items = tf.constant(rng.integers(0, tiny.num_items, (3, width)), tf.int32)
    np.testing.assert_allclose(model_lists.score_lists(model, users, items).numpy(),
                               model.score(users, items).numpy(), rtol=1e-5, atol=1e-6)
