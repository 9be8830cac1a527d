import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import perm_nll
from tfkd.distill import losses, losses_impl


@pytest.mark.parametrize("seed", [0, 42, 8391])
def test_relaxed_permutation_matches_numpy_oracle(seed):
  rng = np.random.default_rng(seed)
  ordered, tail = rng.normal(size=(6, 5)), rng.normal(size=(6, 7))
  got = losses_impl.relaxed_permutation_nll(ordered, tail).numpy()
  np.testing.assert_allclose(got, [perm_nll(o, t) for o, t in zip(ordered, tail)], rtol=1e-6)


def test_closed_form_two_items_no_tail_term():
  # Two ordered items with equal scores and an equal-score tail item:
  # p = e^0/(3 e^0) * e^0/(2 e^0) = 1/6, so -log p = log 6.
  got = losses_impl.relaxed_permutation_nll([[0.0, 0.0]], [[0.0]]).numpy()
  assert got[0] == pytest.approx(math.log(6.0))


def test_no_tail_is_plain_plackett_luce():
  # Scores (log 2, 0) with no tail: p = 2/3 * 1/1, so -log p = log 1.5; the gradient is finite.
  ordered = tf.constant([[math.log(2.0), 0.0]])
  with tf.GradientTape() as tape:
    tape.watch(ordered)
    loss = losses_impl.relaxed_permutation_nll(ordered, tf.zeros([1, 0]))
  assert float(loss[0]) == pytest.approx(math.log(1.5), rel=1e-6)
  assert np.all(np.isfinite(tape.gradient(loss, ordered).numpy()))


def test_stable_for_large_logits():
  ordered = tf.constant([[100.0, 99.0, -100.0]])
  tail = tf.constant([[-100.0, 100.0]])
  with tf.GradientTape() as tape:
    tape.watch(ordered)
    loss = losses_impl.relaxed_permutation_nll(ordered, tail)
  grad = tape.gradient(loss, ordered)
  assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(grad.numpy()))
  # Shifting every logit by a constant leaves the probability unchanged.
  ref = perm_nll(np.array([0.0, -1.0, -200.0]), np.array([-200.0, 0.0]))
  assert float(loss[0]) == pytest.approx(ref, rel=1e-5)


def test_masks_equal_dropping_entries():
  rng = np.random.default_rng(1)
  ordered, tail = rng.normal(size=(1, 4)), rng.normal(size=(1, 5))
  om = np.array([[True, True, True, False]])
  tm = np.array([[True, False, True, True, False]])
  got = losses_impl.relaxed_permutation_nll(ordered, tail, om, tm).numpy()[0]
  assert got == pytest.approx(perm_nll(ordered[0, :3], tail[0, [0, 2, 3]]), rel=1e-6)


def test_keras_loss_averages_rows_and_round_trips():
  rng = np.random.default_rng(2)
  scores = rng.normal(size=(3, 6)).astype(np.float32)
  loss = losses.get("relaxed_permutation", num_ordered=2)
  expected = np.mean([perm_nll(r[:2], r[2:]) for r in scores])
  assert float(loss(np.ones_like(scores), scores)) == pytest.approx(expected, rel=1e-5)
  again = keras.losses.deserialize(keras.losses.serialize(loss))
  assert isinstance(again, losses.RelaxedPermutationLoss) and again.num_ordered == 2
  assert float(again(np.ones_like(scores), scores)) == pytest.approx(expected, rel=1e-5)
  padded = np.concatenate([scores, np.full((3, 1), 50.0, np.float32)], 1)
  mask = np.concatenate([np.ones_like(scores), np.zeros((3, 1), np.float32)], 1)
  assert float(loss(mask, padded)) == pytest.approx(expected, rel=1e-5)  # padding ignored
  with pytest.raises(ValueError, match="unknown loss 'nope'; expected one of"):
    losses.get("nope")


def test_discrepancy_closed_form():
  d = losses_impl.discrepancy([10, 3000, 5], [0, 0, 50], 1e-3).numpy()
  np.testing.assert_allclose(d, [np.tanh(0.01), np.tanh(3.0), 0.0], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_float64_autodiff_of_the_definition(seed):
  # The loss has an analytic gradient; check it against autodiff of the textbook formula.
  rng = np.random.default_rng(seed)
  ordered = rng.normal(scale=3.0, size=(4, 6))
  tail = rng.normal(scale=3.0, size=(4, 5))
  omask = rng.random((4, 6)) > 0.3
  tmask = rng.random((4, 5)) > 0.3
  upstream = rng.normal(size=4)

  def reference(o, t):
    rows = []
    for b in range(4):
      ob = tf.boolean_mask(o[b], omask[b])
      tb = tf.boolean_mask(t[b], tmask[b])
      tail_sum = tf.reduce_sum(tf.exp(tb))
      rows.append(-tf.add_n([ob[k] - tf.math.log(tf.reduce_sum(tf.exp(ob[k:])) + tail_sum)
                             for k in range(int(omask[b].sum()))]))
    return tf.stack(rows)

  o64, t64 = tf.constant(ordered), tf.constant(tail)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([o64, t64])
    ref = tf.reduce_sum(reference(o64, t64) * upstream)
    o32, t32 = tf.cast(o64, tf.float32), tf.cast(t64, tf.float32)
    got = tf.reduce_sum(losses_impl.relaxed_permutation_nll(o32, t32, omask, tmask) *
                        tf.constant(upstream, tf.float32))
  assert float(got) == pytest.approx(float(ref), rel=1e-5)
  for a, b in zip(tape.gradient(got, [o64, t64]), tape.gradient(ref, [o64, t64])):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_extreme_spreads_stay_finite():
  ordered = tf.constant([[1000.0, -1000.0, 0.0]])
  tail = tf.constant([[-1000.0]])
  with tf.GradientTape() as tape:
    tape.watch(ordered)
    loss = losses_impl.relaxed_permutation_nll(ordered, tail)
  assert np.isfinite(loss.numpy()).all()
  assert np.isfinite(tape.gradient(loss, ordered).numpy()).all()


@pytest.mark.parametrize("method_name, config, loss_class, part", [
    ("rrd", dict(top=30, num_interesting=5, num_uninteresting=6, item_top=20,
                 item_num_interesting=4, item_num_uninteresting=5, item_weight=1e-2),
     "RelaxedPermutationLoss", "ir_rrd_loss"),
    ("rrd", dict(variant="full", top=30, num_interesting=5), "RelaxedPermutationLoss",
     "rrd_loss"),
    ("dcd", dict(top=30, item_top=20, num_under=4, num_over=4, item_num_under=4,
                 item_num_over=4, user_weight=1e-2, item_weight=1e-2),
     "RelaxedPermutationLoss", "ucd_loss"),
    ("rd", dict(top=5), "WeightedLogSigmoid", "rd_loss"),
    ("cd", dict(sample_size=5), "SoftTargetBCE", "cd_loss"),
])
def test_training_computes_each_term_through_its_keras_loss(tiny, monkeypatch, method_name,
                                                             config, loss_class, part):
  """Training steps call the Keras Loss classes of `tfkd.distill.losses` (the math stays in
  `losses_impl`): a loss whose output is doubled doubles the part, so a bypass fails here."""
  from tfkd import distill, models
  keras.utils.set_random_seed(0)
  teacher = models.build("bpr", tiny.num_users, tiny.num_items, dim=16, init_stddev=0.3)
  student = models.build("bpr", tiny.num_users, tiny.num_items, dim=4, init_stddev=0.3)
  cls = distill.METHODS[method_name]
  if method_name == "dcd":
    config = dict(config, rrd=distill.RRDConfig(top=30, num_interesting=5, num_uninteresting=6))
  method = cls(cls.config_class(**config))
  distiller = distill.Distiller(student, teacher, method, dataset=tiny)
  for callback in distiller.method_callbacks:
    callback.on_epoch_begin(0)
  x = next(iter(student.make_train_dataset(tiny, 64, seed=0)))
  plain = float(method.loss_parts(student, x)[part])
  original = getattr(losses, loss_class).call
  monkeypatch.setattr(getattr(losses, loss_class), "call",
                      lambda self, y_true, y_pred: 2.0 * original(self, y_true, y_pred))
  assert float(method.loss_parts(student, x)[part]) == pytest.approx(2.0 * plain, rel=1e-6)
  assert plain > 0
