import keras
import numpy as np
import tensorflow as tf

from tfkd.optimizers import LazyAdam


def numpy_lazy_adam(w, grads, lr=0.1, b1=0.9, b2=0.999, eps=1e-7):
  """grads: list of (rows, values); rows may repeat (summed)."""
  w, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
  for t, (rows, values) in enumerate(grads, start=1):
    g = np.zeros_like(w)
    np.add.at(g, rows, values)
    touched = np.unique(rows)
    m[touched] = b1 * m[touched] + (1 - b1) * g[touched]
    v[touched] = b2 * v[touched] + (1 - b2) * g[touched] ** 2
    alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    w[touched] -= alpha * m[touched] / (np.sqrt(v[touched]) + eps)
  return w


def test_sparse_updates_match_numpy_oracle_and_leave_other_rows():
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(6, 3)).astype(np.float32)
  var = keras.Variable(w0)
  opt = LazyAdam(0.1)
  opt.build([var])
  grads = [(np.array([0, 2, 2]), rng.normal(size=(3, 3)).astype(np.float32)),
           (np.array([2, 5]), rng.normal(size=(2, 3)).astype(np.float32))]
  for rows, values in grads:
    opt.apply_gradients([(tf.IndexedSlices(tf.constant(values), tf.constant(rows),
                                           tf.constant([6, 3])), var)])
  np.testing.assert_allclose(var.numpy(), numpy_lazy_adam(w0, grads), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(var.numpy()[[1, 3, 4]], w0[[1, 3, 4]])


def test_dense_gradients_get_plain_adam():
  w0 = np.ones((2, 2), np.float32)
  a, b = keras.Variable(w0), keras.Variable(w0)
  lazy, plain = LazyAdam(0.1), keras.optimizers.Adam(0.1)
  g = tf.constant([[0.5, -1.0], [2.0, 0.0]])
  lazy.apply_gradients([(g, a)])
  plain.apply_gradients([(g, b)])
  np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_fused_dense_adam_matches_numpy_oracle_and_keras_over_steps():
  from tfkd.optimizers import Adam
  rng = np.random.default_rng(1)
  w0 = rng.normal(size=(5, 4)).astype(np.float32)
  grads = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(3)]
  fused_var, keras_var = keras.Variable(w0), keras.Variable(w0)
  fused, reference = Adam(0.05), keras.optimizers.Adam(0.05)
  for g in grads:
    fused.apply_gradients([(tf.constant(g), fused_var)])
    reference.apply_gradients([(tf.constant(g), keras_var)])
  # Dense gradients touch every row: the lazy oracle with all rows is plain Adam.
  expected = numpy_lazy_adam(w0, [(np.arange(5), g) for g in grads], lr=0.05)
  np.testing.assert_allclose(fused_var.numpy(), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fused_var.numpy(), keras_var.numpy(), rtol=1e-5, atol=1e-6)
  assert int(fused.iterations.numpy()) == 3


def test_sparse_gradients_follow_keras_adam_duplicates_included():
  # Keras's Adam on an IndexedSlices gradient: the dense gradient's update except at duplicated
  # rows (row 2 here), whose second moment sums the pieces' squares. Ours matches it on every row
  # over three steps, and differs from Adam of the dense gradient at row 2 only.
  from tfkd.optimizers import Adam
  rng = np.random.default_rng(2)
  w0 = rng.normal(size=(6, 3)).astype(np.float32)
  ours, keras_sparse, dense = keras.Variable(w0), keras.Variable(w0), keras.Variable(w0)
  a, b, c = Adam(0.1), keras.optimizers.Adam(0.1), keras.optimizers.Adam(0.1)
  for rows in ([0, 2, 2], [5, 1], [2, 2, 2, 4]):
    g = tf.IndexedSlices(tf.constant(rng.normal(size=(len(rows), 3)), tf.float32),
                         tf.constant(rows), tf.constant([6, 3]))
    a.apply_gradients([(g, ours)])
    b.apply_gradients([(g, keras_sparse)])
    c.apply_gradients([(tf.convert_to_tensor(g), dense)])
  np.testing.assert_allclose(ours.numpy(), keras_sparse.numpy(), rtol=1e-4, atol=1e-5)
  others = [0, 1, 3, 4, 5]
  np.testing.assert_allclose(ours.numpy()[others], dense.numpy()[others], rtol=1e-4, atol=1e-5)
  assert np.abs(ours.numpy()[2] - dense.numpy()[2]).max() > 1e-3


def test_fit_runs_the_fused_kernel_and_matches_keras_adam(monkeypatch):
  # Keras's fit hands update_step the backend tf.Variable, not the Keras variable: the fused path
  # must be taken there too (it was not: fit silently ran Keras's six-pass update).
  from tfkd.optimizers import Adam
  calls = []
  kernel = tf.raw_ops.ResourceApplyAdam

  def spy(**kwargs):
    calls.append(kwargs["var"])
    return kernel(**kwargs)

  monkeypatch.setattr(tf.raw_ops, "ResourceApplyAdam", spy)
  rng = np.random.default_rng(3)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = rng.normal(size=(64, 2)).astype(np.float32)
  weights = []
  for opt in (Adam(0.05), keras.optimizers.Adam(0.05)):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    weights.append([w.numpy() for w in model.weights])
  assert calls  # the train function was traced with the fused kernel
  for ours, theirs in zip(*weights):  # the same formula; float rounding over 8 steps
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
