import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkd import models
from tfkd.data import pipelines


def small_bpr(l2=0.0):
  keras.utils.set_random_seed(0)
  return models.build("bpr", 5, 7, dim=3, l2=l2, init_stddev=0.5)


def test_scores_match_numpy_oracle_and_each_other():
  m = small_bpr()
  p, q = m.user_embedding.embeddings.numpy(), m.item_embedding.embeddings.numpy()
  users = np.array([0, 3, 4])
  items = np.array([[1, 2], [0, 6], [5, 5]])
  expected = np.einsum("bd,bnd->bn", p[users], q[items])
  np.testing.assert_allclose(m.score(users, items).numpy(), expected, rtol=1e-5, atol=1e-6)
  all_scores = m.score_all(users).numpy()
  np.testing.assert_allclose(all_scores, p[users] @ q.T, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.take_along_axis(all_scores, items, 1), expected, rtol=1e-5,
                             atol=1e-6)
  # score_users: BPR's matrix product against the base class's generic path through score().
  some_items = np.array([6, 0, 2])
  np.testing.assert_allclose(m.score_users(some_items).numpy(), q[some_items] @ p.T, atol=1e-6)
  generic = models.lists.ListScoring.score_users(m, tf.constant(some_items))
  np.testing.assert_allclose(generic.numpy(), q[some_items] @ p.T, atol=1e-6)
  # score_item_users: S(users[b, n], items[b]), BPR's override and the generic path.
  pair_users = np.array([[0, 4], [3, 3], [1, 2]])
  expected_t = np.einsum("bd,bnd->bn", q[some_items], p[pair_users])
  np.testing.assert_allclose(m.score_item_users(some_items, pair_users).numpy(), expected_t,
                             atol=1e-6)
  generic_t = models.lists.ListScoring.score_item_users(m, some_items, pair_users)
  np.testing.assert_allclose(generic_t.numpy(), expected_t, atol=1e-6)


def test_loss_closed_form():
  m = small_bpr(l2=0.1)
  x = {"user": np.array([1, 4]), "item": np.array([[0, 2, 3], [6, 0, 5]])}
  y_pred = tf.constant([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]])
  # softplus(-(s_pos - s_neg)) over the 4 (pos, neg) pairs: margins 2, 1, -3, 1.
  margins = np.array([2.0, 1.0, -3.0, 1.0])
  bpr = np.mean(np.log1p(np.exp(-margins)))
  p, q = m.user_embedding.embeddings.numpy(), m.item_embedding.embeddings.numpy()
  reg = 0.1 * (np.sum(p[x["user"]] ** 2) + np.sum(q[x["item"]] ** 2)) / 2
  assert float(m.compute_loss(x=x, y_pred=y_pred)) == pytest.approx(bpr + reg, rel=1e-5)


def test_loss_is_stable_for_large_margins():
  m = small_bpr()
  loss = m.compute_loss(y_pred=tf.constant([[-100.0, 100.0], [100.0, -100.0]]))
  assert float(loss) == pytest.approx(100.0, rel=1e-5)  # (200 + 0) / 2


def test_serialization_round_trip(tmp_path):
  m = small_bpr(l2=0.01)
  path = str(tmp_path / "m.keras")
  m.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, models.BPR) and loaded.get_config()["dim"] == 3
  users = np.arange(5)
  np.testing.assert_allclose(loaded.score_all(users), m.score_all(users), rtol=1e-6)


def test_one_training_step_lowers_loss(tiny):
  keras.utils.set_random_seed(0)
  m = models.build("bpr", tiny.num_users, tiny.num_items, dim=8, init_stddev=0.1)
  m.compile(optimizer=keras.optimizers.Adam(0.05))
  batch = next(iter(m.make_train_dataset(tiny, 256, seed=0)))
  before = float(m.compute_loss(y_pred=m(batch)))
  m.train_on_batch(batch)
  assert float(m.compute_loss(y_pred=m(batch))) < before


def test_negatives_are_never_observed(tiny):
  seen = set(zip(tiny.train_users.tolist(), tiny.train_items.tolist()))
  data = pipelines.pairwise(tiny, 128, num_negatives=4, seed=3)
  count = 0
  for batch in data:
    users, items = batch["user"].numpy(), batch["item"].numpy()
    for u, row in zip(users, items):
      assert (u, row[0]) in seen
      assert not any((u, j) in seen for j in row[1:])
      count += 1
  assert count == tiny.num_train


@pytest.mark.parametrize("first_epoch", [None, 0])
def test_epochs_draw_fresh_negatives_reproducibly(tiny, first_epoch):
  # first_epoch=0 is the trainers' mode (epoch-counted seeds); both must reshuffle and redraw.
  def epochs(seed):
    data = pipelines.pairwise(tiny, 4096, seed=seed, first_epoch=first_epoch)
    return [next(iter(data)) for _ in range(3)]
  a, b = epochs(1), epochs(1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["item"].numpy(), y["item"].numpy())
  for x, y in ((a[0], a[1]), (a[1], a[2])):
    assert not np.array_equal(x["user"].numpy(), y["user"].numpy())  # another permutation
    assert not np.array_equal(x["item"].numpy()[:, 1], y["item"].numpy()[:, 1])
  other = epochs(2)[0]
  assert not np.array_equal(a[0]["item"].numpy(), other["item"].numpy())


def test_a_pipeline_started_at_epoch_k_replays_epoch_k(tiny):
  # What resuming relies on: epochs are seeded by (seed, epoch) alone.
  straight = pipelines.pairwise(tiny, 4096, seed=5, first_epoch=0)
  epochs = [next(iter(straight)) for _ in range(3)]
  resumed = next(iter(pipelines.pairwise(tiny, 4096, seed=5, first_epoch=2)))
  for name in ("user", "item"):
    np.testing.assert_array_equal(resumed[name].numpy(), epochs[2][name].numpy())
