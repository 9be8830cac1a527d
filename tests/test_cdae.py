import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_scoring_paths
from tfkd import models, training


def small_cdae(dataset, **kwargs):
  keras.utils.set_random_seed(0)
  m = models.build_for("cdae", dataset, dim=5, **kwargs)
  rng = np.random.default_rng(1)
  for v in m.trainable_weights:
    v.assign(rng.normal(size=v.shape).astype("float32"))
  return m


def numpy_scores(m, dataset):
  """The definition: z_u = sigmoid(sum of W_i over the user's training items + V_u + b),
  score = W'_i . z_u + b'_i; every user x every item."""
  indptr, items = dataset.train_csr()
  w_in, v = m.item_in.embeddings.numpy(), m.user_node.embeddings.numpy()
  z = np.stack([1 / (1 + np.exp(-(w_in[items[indptr[u]:indptr[u + 1]]].sum(0) + v[u] +
                                   m.hidden_bias.numpy())))
                for u in range(dataset.num_users)])
  return z @ m.item_out.embeddings.numpy().T + m.item_bias.numpy()


@pytest.mark.parametrize("dense_input", [True, False])
def test_scores_match_numpy_oracle_on_every_path(tiny, dense_input):
  m = small_cdae(tiny)
  m.dense_input = dense_input
  users = [3, 0, tiny.num_users - 1]
  items = [[1, 2, tiny.num_items - 1], [7, 7, 0], [5, 6, 8]]
  assert_scoring_paths(m, numpy_scores(m, tiny), users, items, [4, 100])


def test_dense_and_sparse_inputs_give_the_same_gradients(tiny):
  m = small_cdae(tiny, l2=0.1)
  m.item_in.embeddings.assign(m.item_in.embeddings * 0.1)
  batch = next(iter(m.make_train_dataset(tiny, 64, seed=0)))
  grads = {}
  for dense_input in (True, False):
    m.dense_input = dense_input
    with tf.GradientTape() as tape:
      loss = m.compute_loss(x=batch, y_pred=m(batch, training=False))
    grads[dense_input] = tape.gradient(loss, m.trainable_variables)
  for dense, sparse in zip(grads[True], grads[False]):
    np.testing.assert_allclose(tf.convert_to_tensor(dense), tf.convert_to_tensor(sparse),
                               rtol=1e-5, atol=1e-6)


def test_dense_rows_only_when_cheaper(tiny):
  # Dense when density x dim > 1 + 0.024 dim: ML-100K's 6.3% goes dense at dim 100 (the
  # teacher), stays sparse at dim 10 (the student).
  from tfkd.data import load_dataset
  density = len(tiny.train_csr()[1]) / (tiny.num_users * tiny.num_items)
  assert 0.05 < density < 0.1
  assert models.build_for("cdae", tiny, dim=100).dense_input
  assert not models.build_for("cdae", tiny, dim=10).dense_input
  sparse = load_dataset("synthetic", num_candidates=50, synthetic_params=dict(
      num_users=300, num_items=2000, interactions_per_user=10))
  assert not models.build_for("cdae", sparse, dim=100).dense_input


def test_corruption_drops_items_and_rescales_in_training_only(tiny):
  m = small_cdae(tiny, corruption=0.5)
  m.item_in.embeddings.assign(m.item_in.embeddings * 0.1)  # keep sigmoid away from saturation
  users = tf.range(tiny.num_users)
  clean = m.encode(users).numpy()
  np.testing.assert_allclose(m.encode(users, training=False).numpy(), clean)
  noisy = [m.encode(users, training=True).numpy() for _ in range(200)]
  assert not np.allclose(noisy[0], clean)
  # E[pre-activation] is unchanged by dropout with 1/(1-q) scaling: logit(z) averages back.
  logit = lambda z: np.log(z / (1 - z))  # noqa: E731
  mean_pre = np.mean([logit(z) for z in noisy], axis=0)
  np.testing.assert_allclose(mean_pre, logit(clean), atol=0.1)
  m0 = small_cdae(tiny, corruption=0.0)
  np.testing.assert_allclose(m0.encode(users, training=True), m0.encode(users), rtol=1e-6)


def test_loss_closed_form(tiny):
  softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
  y_pred = tf.constant([[2.0, 0.0, 1.0], [-1.0, 3.0, -2.0]])
  expected = np.mean([(softplus(-2.0) + softplus(0.0) + softplus(1.0)) / 3,
                      (softplus(1.0) + softplus(3.0) + softplus(-2.0)) / 3])
  m = small_cdae(tiny, l2=0.1)
  x = {"user": np.array([1, 4]), "item": np.array([[0, 2, 3], [6, 0, 5]])}
  reg = 0.1 * (np.sum(m.user_node.embeddings.numpy()[x["user"]] ** 2) +
               np.sum(m.item_out.embeddings.numpy()[x["item"]] ** 2)) / 2
  assert float(m.compute_loss(x=x, y_pred=y_pred)) == pytest.approx(expected + reg, rel=1e-5)


def test_state_round_trips_through_a_workdir(tiny, tmp_path):
  m = small_cdae(tiny)
  training.save_model(m, "cdae", tiny, str(tmp_path))
  loaded, meta = training.load_model(str(tmp_path), tiny)
  assert meta["config"]["num_interactions"] == tiny.num_train
  np.testing.assert_array_equal(loaded.row_items.numpy(), tiny.train_csr()[1])
  np.testing.assert_allclose(loaded.score_all(tf.range(10)), m.score_all(tf.range(10)), atol=1e-6)
  path = str(tmp_path / "m.keras")  # and through Keras' own format
  m.save(path)
  again = keras.models.load_model(path)
  np.testing.assert_allclose(again.score_all(tf.range(10)), m.score_all(tf.range(10)), atol=1e-6)


def test_one_training_step_lowers_loss(tiny):
  keras.utils.set_random_seed(0)
  m = models.build_for("cdae", tiny, dim=8, corruption=0.2, num_negatives=3, init_stddev=0.1)
  m.compile(optimizer=keras.optimizers.Adam(0.05))
  batch = next(iter(m.make_train_dataset(tiny, 256, seed=0)))
  before = float(m.compute_loss(x=batch, y_pred=m(batch)))
  m.train_on_batch(batch)
  assert float(m.compute_loss(x=batch, y_pred=m(batch))) < before


def test_without_its_data_it_says_how_to_build_it(tiny):
  with pytest.raises(ValueError, match="build_for"):
    models.build("cdae", tiny.num_users, tiny.num_items)
  m = models.build_for("cdae", tiny, dim=3)
  from tfkd.data import load_dataset
  other = load_dataset("synthetic", num_candidates=5,
                       synthetic_params=dict(num_users=60, num_items=120,
                                             interactions_per_user=12))
  with pytest.raises(ValueError, match="interactions"):
    m.attach(other)
  for kwargs in (dict(dim=0), dict(corruption=1.0), dict(num_negatives=0), dict(l2=-1.0)):
    with pytest.raises(ValueError):
      models.build_for("cdae", tiny, **kwargs)
