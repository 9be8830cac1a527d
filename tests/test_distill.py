import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from conftest import perm_nll
from tfkd import models
from tfkd.distill import Distiller, RRDConfig, samplers, teacher as teacher_lib
from tfkd.distill.rrd import RRD
from tfkd.errors import ConfigError


def build_pair(d):
  keras.utils.set_random_seed(0)
  teacher = models.build("bpr", d.num_users, d.num_items, dim=16, init_stddev=0.3)
  student = models.build("bpr", d.num_users, d.num_items, dim=4, init_stddev=0.3)
  return teacher, student


def rrd_setup(d, **kw):
  teacher, student = build_pair(d)
  method = RRD(RRDConfig(top=30, num_interesting=5, num_uninteresting=6, item_top=20,
                         item_num_interesting=4, item_num_uninteresting=5, **kw))
  knowledge = {"user_topk": teacher_lib.user_topk(teacher, d, method.user_k),
               "item_topk": teacher_lib.item_topk(teacher, d, method.item_k)
               if method.item_k else None}
  method.setup(d, student, teacher, knowledge)
  distiller = Distiller(student, teacher, method)
  distiller.declare_parts()
  return distiller, method, knowledge


def batch(d, method, epoch=0):
  """A training batch, with the method's lists drawn for `epoch`."""
  method.resample(epoch)
  return next(iter(d_pipeline(d)))


def d_pipeline(d):
  from tfkd.data import pipelines
  return pipelines.pairwise(d, 64, seed=0)


def test_distiller_freezes_teacher_scores_like_student_and_moves_student(tiny):
  distiller, method, _ = rrd_setup(tiny, item_weight=1e-2, weight=1e-1)
  x = batch(tiny, method)
  assert not distiller.teacher.trainable
  assert {id(v) for v in distiller.trainable_variables} == \
      {id(v) for v in distiller.student.trainable_variables}
  users = tf.range(5)
  np.testing.assert_allclose(distiller.score_all(users), distiller.student.score_all(users))
  np.testing.assert_allclose(distiller(x), distiller.student(x))
  distiller.compile(optimizer=keras.optimizers.Adam(0.1))
  teacher_before = [w.numpy().copy() for w in distiller.teacher.weights]
  student_before = [w.numpy().copy() for w in distiller.student.weights]
  logs = distiller.train_on_batch(x, return_dict=True)
  assert {"base_loss", "rrd_loss", "ir_rrd_loss"} <= set(logs)
  for w, before in zip(distiller.teacher.weights, teacher_before):
    np.testing.assert_array_equal(w.numpy(), before)
  assert all(not np.allclose(w.numpy(), b)
             for w, b in zip(distiller.student.weights, student_before))


def test_rrd_batch_is_ordered_top_items_then_unobserved_tail(tiny):
  distiller, method, knowledge = rrd_setup(tiny, item_weight=1e-2)
  x = batch(tiny, method, epoch=3)
  users, items = (r.numpy() for r in method.batch_rows(x))
  assert sorted(users) == sorted(set(x["user"].numpy())) and \
      sorted(items) == sorted(set(x["item"].numpy()[:, 0]))
  rrd_items = method.lists["user"].numpy()[users]
  seen = set(zip(tiny.train_users.tolist(), tiny.train_items.tolist()))
  top = knowledge["user_topk"]
  for u, row in zip(users, rrd_items):
    ordered, tail = row[:5], row[5:]
    positions = [list(top[u]).index(i) for i in ordered]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert all((u, j) not in seen and j not in top[u] for j in tail)
  itop = knowledge["item_topk"]
  for i, row in zip(items, method.lists["item"].numpy()[items]):
    assert all(u in itop[i] for u in row[:4])
    assert all((u, i) not in seen and u not in itop[i] for u in row[4:])
  # The loss part equals the relaxed permutation NLL computed by hand.
  scores = distiller.student.score(users, rrd_items).numpy().astype(np.float64)
  expected = np.mean([perm_nll(r[:5], r[5:]) for r in scores])
  got = float(method.loss_parts(distiller.student, x)["rrd_loss"])
  assert got == pytest.approx(method.config.weight * expected, rel=1e-4)


def test_list_pairs_scores_the_lists_of_the_batchs_first_pairs_only(tiny):
  distiller, method, _ = rrd_setup(tiny, item_weight=1e-2, list_pairs=10)
  x = batch(tiny, method, epoch=1)
  users, items = (r.numpy() for r in method.batch_rows(x))
  first_users, first_items = x["user"].numpy()[:10], x["item"].numpy()[:10, 0]
  assert sorted(users) == sorted(set(first_users)) and \
      sorted(items) == sorted(set(first_items))
  assert set(x["user"].numpy()) - set(first_users)  # the rest of the batch is left out
  parts = {k: float(v) for k, v in method.loss_parts(distiller.student, x).items()}
  student = distiller.student
  for part, rows, lists, k, score_fn in (
      ("rrd_loss", users, method.lists["user"], 5, student.score),
      ("ir_rrd_loss", items, method.lists["item"], 4, student.score_item_users)):
    scores = score_fn(rows, lists.numpy()[rows]).numpy().astype(np.float64)
    expected = np.mean([perm_nll(r[:k], r[k:]) for r in scores])
    weight = method.config.weight if part == "rrd_loss" else method.config.item_weight
    assert parts[part] == pytest.approx(weight * expected, rel=1e-4), part


def test_list_items_batch_gives_lists_to_the_sampled_negatives_too(tiny):
  """--list_items=batch: the item side's rows are every distinct item of the batch's pairs (the
  first list_pairs of them), negatives included; the part is the mean NLL over those rows."""
  distiller, method, _ = rrd_setup(tiny, item_weight=1e-2, list_pairs=10, list_items="batch")
  x = batch(tiny, method, epoch=2)
  _, items = (r.numpy() for r in method.batch_rows(x))
  first = x["item"].numpy()[:10]
  assert first.shape[1] > 1 and sorted(items) == sorted(set(first.reshape(-1)))
  assert set(items) - set(first[:, 0])  # negatives that are no pair's positive
  scores = distiller.student.score_item_users(
      items, method.lists["item"].numpy()[items]).numpy().astype(np.float64)
  expected = np.mean([perm_nll(r[:4], r[4:]) for r in scores])
  got = float(method.loss_parts(distiller.student, x)["ir_rrd_loss"])
  assert got == pytest.approx(method.config.item_weight * expected, rel=1e-4)
  with pytest.raises(ConfigError, match="rrd list_items must be one of positives, batch"):
    RRD(RRDConfig(list_items="negatives"))


def test_negative_list_pairs_is_refused():
  with pytest.raises(ConfigError, match="list_pairs must be >= 0"):
    RRD(RRDConfig(list_pairs=-1))


def test_full_variant_tail_is_every_other_unobserved_item(tiny):
  distiller, method, knowledge = rrd_setup(tiny, variant="full", weight=1.0)
  x = batch(tiny, method)
  student = distiller.student
  got = float(method.loss_parts(student, x)["rrd_loss"])
  expected = []
  for u in method.batch_rows(x)[0].numpy():
    s = student.score_all(tf.constant([u])).numpy()[0].astype(np.float64)
    ordered = knowledge["user_topk"][u, :5]
    tail = np.ones(tiny.num_items, bool)
    tail[tiny.train_items[tiny.train_users == u]] = False
    tail[ordered] = False
    expected.append(perm_nll(s[ordered], s[tail]))
  assert got == pytest.approx(np.mean(expected), rel=1e-4)


def test_rank_positions_first_draw_frequencies_match_probabilities():
  # The smallest sorted position is not the first draw; use k = 1 where the single draw is
  # exactly p(r) ~ exp(-(r + 1) / T).
  top, t, n = 12, 3.0, 20000
  pos = samplers.rank_positions(n, top, 1, t, tf.constant([5, 1], tf.int64)).numpy()[:, 0]
  observed = np.bincount(pos, minlength=top)
  expected = samplers.rank_probabilities(top, t).numpy() * n
  assert scipy.stats.chisquare(observed, expected).pvalue > 1e-3


def test_weighted_without_replacement_frequencies_and_zero_weights():
  w = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 0.0]], np.float32)
  n = 20000
  idx, valid = samplers.weighted_without_replacement(np.repeat(w, n, 0), 1,
                                                     tf.constant([9, 9], tf.int64))
  counts = np.bincount(idx.numpy()[:, 0], minlength=6)
  assert counts[0] == 0 and counts[5] == 0 and valid.numpy().all()
  expected = w[0, 1:5] / w[0].sum() * n
  assert scipy.stats.chisquare(counts[1:5], expected).pvalue > 1e-3
  # Asking for more than the positive weights: the extras are marked invalid.
  idx, valid = samplers.weighted_without_replacement(w, 5, tf.constant([1, 2], tf.int64))
  assert sorted(idx.numpy()[0, :4].tolist()) == [1, 2, 3, 4] and valid.numpy()[0].tolist() == \
      [True] * 4 + [False]
  det, _ = samplers.weighted_without_replacement(w, 2, tf.constant([1, 2], tf.int64),
                                                 deterministic=True)
  assert det.numpy()[0].tolist() == [4, 3]


def test_rrd_lists_are_redrawn_every_epoch_by_seed_and_epoch(tiny):
  # The reference redraws the interesting/uninteresting lists every epoch; ours are drawn by the
  # callback at each epoch's start from (seed, epoch), so a resumed run draws the same lists.
  _, method, _ = rrd_setup(tiny)
  (callback,) = method.callbacks()
  lists = []
  for epoch in (0, 1, 0):
    callback.on_epoch_begin(epoch)
    lists.append(method.lists["user"].numpy().copy())
  assert not np.array_equal(lists[0], lists[1])
  np.testing.assert_array_equal(lists[0], lists[2])


def test_list_pairs_are_shared_among_replicas(tiny, monkeypatch):
  """Under a strategy of R replicas each replica's batch is 1/R of the global one, and it takes
  ceil(N / R) of its pairs, so the global step still scores the lists of ~N pairs."""
  _, method, _ = rrd_setup(tiny, list_pairs=10)
  x = batch(tiny, method)

  class TwoReplicas:
    num_replicas_in_sync = 2

  monkeypatch.setattr(tf.distribute, "get_strategy", lambda: TwoReplicas())
  users, _ = method.batch_rows(x)
  assert sorted(users.numpy()) == sorted(set(x["user"].numpy()[:5]))
