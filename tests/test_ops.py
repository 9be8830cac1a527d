import numpy as np
import tensorflow as tf

from tfkd.models import ops


def test_gather_dot_scores_and_gradients_match_numpy_oracle():
  rng = np.random.default_rng(0)
  rows = rng.normal(size=(3, 4)).astype(np.float32)
  table = rng.normal(size=(7, 4)).astype(np.float32)
  cols = rng.integers(0, 7, size=(3, 20)).astype(np.int32)  # duplicates within and across rows
  upstream = rng.normal(size=(3, 20)).astype(np.float32)
  r, t = tf.constant(rows), tf.constant(table)
  with tf.GradientTape() as tape:
    tape.watch([r, t])
    scores = ops.gather_dot(r, t, cols)
    loss = tf.reduce_sum(scores * upstream)
  d_rows, d_table = tape.gradient(loss, [r, t])
  np.testing.assert_allclose(scores.numpy(), np.einsum("bd,bnd->bn", rows, table[cols]),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(d_rows.numpy(), np.einsum("bn,bnd->bd", upstream, table[cols]),
                             rtol=1e-5, atol=1e-5)
  expected = np.zeros_like(table)
  for b in range(3):
    for n in range(20):
      expected[cols[b, n]] += upstream[b, n] * rows[b]
  np.testing.assert_allclose(tf.convert_to_tensor(d_table).numpy(), expected, rtol=1e-5,
                             atol=1e-5)


def test_only_long_static_lists_take_the_dense_path():
  assert ops.is_long(tf.zeros([2, ops.LONG_LIST], tf.int32))
  assert not ops.is_long(tf.zeros([2, 2], tf.int32))


def test_bpr_long_lists_train_its_variables_like_the_einsum_path():
  from tfkd import models
  m = models.build("bpr", 6, 30, dim=3, init_stddev=0.5)
  m.build_for_dataset()
  users = tf.constant([0, 5, 2])
  items = tf.constant(np.random.default_rng(1).integers(0, 30, (3, 24)), tf.int32)
  w = tf.constant(np.random.default_rng(2).normal(size=(3, 24)), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    fast = tf.reduce_sum(m.score(users, items) * w)
    slow = tf.reduce_sum(tf.einsum("bd,bnd->bn", m.user_embedding(users),
                                   m.item_embedding(items)) * w)
  np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-5)
  for a, b in zip(tape.gradient(fast, m.trainable_variables),
                  tape.gradient(slow, m.trainable_variables)):
    np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(),
                               rtol=1e-5, atol=1e-6)
