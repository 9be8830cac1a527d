import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_scoring_paths
from tfkd import models, training
from tfkd.models import caser


def small_caser(dataset, **kwargs):
  keras.utils.set_random_seed(0)
  m = models.build_for("caser", dataset, dim=4, seq_len=3, num_h=2, num_v=2, **kwargs)
  rng = np.random.default_rng(1)
  for v in m.trainable_weights:
    v.assign(rng.normal(size=v.shape).astype("float32") * 0.5)
  return m


def test_sequences_are_the_previous_items_padded():
  from tfkd.data import load_dataset
  d = load_dataset("synthetic", num_candidates=5,
                   synthetic_params=dict(num_users=20, num_items=50, interactions_per_user=8))
  inputs, recent = caser.sequences(d, 3)
  indptr, items = d.train_csr()
  pad = d.num_items
  for u in range(d.num_users):
    row = list(items[indptr[u]:indptr[u + 1]])
    for t in range(len(row)):
      want = ([pad] * 3 + row[:t])[-3:]
      assert list(inputs[indptr[u] + t]) == want
    assert list(recent[u]) == ([pad] * 3 + row)[-3:]


def numpy_encode(m, user, seq):
  """The definition, with explicit loops over convolution positions."""
  e = m.item_embedding.embeddings.numpy()[seq]  # [L, d]
  L, d = e.shape
  feats = []
  for h, conv in enumerate(m.h_convs, start=1):
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()  # [h, d, 1, n_h]
    outs = [np.maximum(np.einsum("hd,hdn->n", e[t:t + h], kernel[:, :, 0, :]) + bias, 0)
            for t in range(L - h + 1)]
    feats.append(np.max(outs, axis=0))
  kernel, bias = m.v_conv.kernel.numpy(), m.v_conv.bias.numpy()  # [L, 1, 1, n_v]
  vertical = np.einsum("ld,ln->dn", e, kernel[:, 0, 0, :]) + bias  # [d, n_v]
  x = np.concatenate(feats + [vertical.reshape(-1)])
  z = np.maximum(x @ m.fc.kernel.numpy() + m.fc.bias.numpy(), 0)
  return np.concatenate([z, m.user_embedding.embeddings.numpy()[user]])


def test_scores_match_numpy_oracle_on_every_path(tiny):
  m = small_caser(tiny)
  recent = m.recent.numpy()
  x = np.stack([numpy_encode(m, u, recent[u]) for u in range(tiny.num_users)])
  every = x @ m.out_embedding.embeddings.numpy().T + m.out_bias.embeddings.numpy()[:, 0]
  assert_scoring_paths(m, every, [2, 0, tiny.num_users - 1],
                       [[1, 2, tiny.num_items - 1], [7, 7, 0], [5, 6, 8]], [3, 9])
  # A training batch's own sequence goes through the same network.
  seq = np.array([[tiny.num_items, 4, 9]])
  got = m({"user": np.array([5]), "item": np.array([[1, 2]]), "seq": seq}).numpy()
  want = numpy_encode(m, 5, seq[0]) @ m.out_embedding.embeddings.numpy()[[1, 2]].T
  np.testing.assert_allclose(got[0], want + m.out_bias.embeddings.numpy()[[1, 2], 0], rtol=1e-4,
                             atol=1e-4)


def test_dropout_only_in_training(tiny):
  m = small_caser(tiny, dropout=0.5)
  users = tf.range(10)
  np.testing.assert_allclose(m.encode(users), m.encode(users), rtol=1e-6)
  assert not np.allclose(m.encode(users, training=True), m.encode(users))


def test_state_round_trips_through_a_workdir(tiny, tmp_path):
  m = small_caser(tiny)
  training.save_model(m, "caser", tiny, str(tmp_path))
  loaded, _ = training.load_model(str(tmp_path), tiny)
  np.testing.assert_array_equal(loaded.recent.numpy(), caser.sequences(tiny, 3)[1])
  np.testing.assert_allclose(loaded.score_all(tf.range(10)), m.score_all(tf.range(10)), atol=1e-5)


def test_loss_closed_form_and_one_step_lowers_it(tiny):
  softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
  m = small_caser(tiny)
  y_pred = tf.constant([[2.0, 0.0, 1.0]])
  expected = (softplus(-2.0) + softplus(0.0) + softplus(1.0)) / 3
  assert float(m.compute_loss(y_pred=y_pred)) == pytest.approx(expected, rel=1e-5)
  keras.utils.set_random_seed(0)
  m = models.build_for("caser", tiny, dim=8, dropout=0.0)
  m.compile(optimizer=keras.optimizers.Adam(0.01))
  batch = next(iter(m.make_train_dataset(tiny, 256, seed=0)))
  assert batch["seq"].shape == (256, 5) and batch["item"].shape == (256, 4)
  before = float(m.compute_loss(x=batch, y_pred=m(batch)))
  m.train_on_batch(batch)
  assert float(m.compute_loss(x=batch, y_pred=m(batch))) < before


def test_bad_arguments_are_refused(tiny):
  for kwargs in (dict(dim=0), dict(seq_len=0), dict(dropout=1.0), dict(num_h=0), dict(l2=-1.0)):
    with pytest.raises(ValueError):
      models.build_for("caser", tiny, **kwargs)
