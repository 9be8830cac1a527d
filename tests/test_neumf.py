import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_scoring_paths
from tfkd import models


def small_neumf(hidden=None, **kwargs):
  keras.utils.set_random_seed(0)
  m = models.build("neumf", 6, 9, dim=4, hidden=hidden, **kwargs)
  rng = np.random.default_rng(1)
  for v in m.weights:  # the initial output weights are constants: randomise everything
    v.assign(rng.normal(size=v.shape).astype("float32"))
  return m


def numpy_scores(m, users, items):
  """The definition: w_g . (p_u * q_i) + w_m . MLP([p'_u ; q'_i]) + b, pair by pair (one term
  only for a one-tower model)."""
  get = lambda v: v.numpy()  # noqa: E731
  out = np.full(items.shape, float(get(m.out_bias)))
  for b, u in enumerate(users):
    for n, i in enumerate(items[b]):
      if m.towers in ("both", "gmf"):
        pg, qg = get(m.user_gmf.embeddings), get(m.item_gmf.embeddings)
        out[b, n] += get(m.out_gmf) @ (pg[u] * qg[i])
      if m.towers in ("both", "mlp"):
        pm, qm = get(m.user_mlp.embeddings), get(m.item_mlp.embeddings)
        first = np.concatenate([get(m.w_user), get(m.w_item)], axis=0)  # W of [p' ; q']
        h = np.maximum(np.concatenate([pm[u], qm[i]]) @ first + get(m.b_first), 0)
        for kernel, bias in m.mlp_layers:
          h = np.maximum(h @ get(kernel) + get(bias), 0)
        out[b, n] += get(m.out_mlp) @ h
  return out


@pytest.mark.parametrize("hidden,towers", [(None, "both"), ([6, 3], "both"), (None, "gmf"),
                                           ([6, 3], "mlp")])
def test_scores_match_numpy_oracle_on_every_path(hidden, towers):
  m = small_neumf(hidden, towers=towers)
  every = numpy_scores(m, np.arange(6), np.tile(np.arange(9), (6, 1)))
  users, items = [0, 5, 2], [[1, 8], [0, 0], [7, 3]]
  assert_scoring_paths(m, every, users, items, np.arange(9))
  m.portable = True  # the plain-ops path used in exports
  assert_scoring_paths(m, every, users, items, [4])


def test_full_ranking_chunks_agree_with_pairs_on_a_larger_catalog():
  keras.utils.set_random_seed(0)
  m = models.build("neumf", 70, 300, dim=8, init_stddev=0.5)
  users = np.arange(70)  # more than one 32-user chunk, and a partial one
  every = m.score(users, np.tile(np.arange(300), (70, 1))).numpy()
  np.testing.assert_allclose(m.score_all(tf.constant(users)).numpy(), every, atol=1e-5)


def test_portable_chunks_shrink_to_small_requests(monkeypatch):
  from tfkd.models import neumf
  monkeypatch.setattr(neumf, "_PAIR_ELEMENTS_PER_CHUNK", 300 * 8 * 16)  # 16 users per chunk
  keras.utils.set_random_seed(0)
  m = models.build("neumf", 70, 300, dim=8, init_stddev=0.5)
  m.portable = True
  every = m.score(np.arange(70), np.tile(np.arange(300), (70, 1))).numpy()
  score_all = tf.function(m.score_all, input_signature=[tf.TensorSpec([None], tf.int32)])
  for users in ([], [3], list(range(15)), list(range(16)), list(range(70))):
    got = score_all(tf.constant(users, tf.int32)).numpy()
    assert got.shape == (len(users), 300)
    np.testing.assert_allclose(got, every[users], atol=1e-5)


def test_warm_start_scores_are_the_alpha_mix_of_the_towers():
  # He et al. 3.4.1: the pre-trained NeuMF's output layer is [alpha w_g ; (1 - alpha) w_m], so
  # before fine-tuning its scores are exactly alpha s_GMF + (1 - alpha) s_MLP.
  gmf, mlp = small_neumf([6, 3], towers="gmf"), small_neumf([6, 3], towers="mlp")
  keras.utils.set_random_seed(5)
  m = models.build("neumf", 6, 9, dim=4, hidden=[6, 3])
  m.warm_start({"g": gmf, "m": mlp}, alpha=0.3)
  want = 0.3 * numpy_scores(gmf, np.arange(6), np.tile(np.arange(9), (6, 1))) + 0.7 * (
      numpy_scores(mlp, np.arange(6), np.tile(np.arange(9), (6, 1))))
  assert_scoring_paths(m, want, [0, 5], [[1, 8], [0, 3]], [2, 7])
  np.testing.assert_array_equal(m.user_mlp.embeddings.numpy(), mlp.user_mlp.embeddings.numpy())


def test_warm_start_refuses_wrong_towers_and_shapes():
  gmf, mlp = small_neumf(towers="gmf"), small_neumf(towers="mlp")
  full = small_neumf()
  cases = [
      (full, {"g": gmf, "f": small_neumf()}, "not a one-tower NeuMF"),
      (full, {"g": gmf, "g2": small_neumf(towers="gmf")}, "both gmf towers"),
      (full, {"g": gmf}, "one GMF and one MLP"),
      (full, {"g": gmf, "m": small_neumf(hidden=[5], towers="mlp")}, r"hidden \[5\]"),
      (full, {"g": models.build("neumf", 6, 9, dim=3, towers="gmf"), "m": mlp}, "dim 3"),
      (gmf, {"g": gmf, "m": mlp}, "both towers"),
      (models.build("bpr", 6, 9, dim=4), {"g": gmf, "m": mlp}, "BPR has no pre-training"),
  ]
  for model, pretrained, message in cases:
    with pytest.raises(ValueError, match=message):
      model.warm_start(pretrained)


def test_paper_parameter_counts():
  # DCD paper, CiteULike: 12.24M (dim 200) and 1.22M (dim 20): two embeddings per side, the
  # first MLP layer 2d -> d, the output layer over [d ; d].
  for dim, expected in ((200, 12_240_601), (20, 1_216_861)):
    m = models.build("neumf", 5219, 25181, dim=dim)
    assert m.count_params() == expected == 2 * 30400 * dim + 2 * dim * dim + 3 * dim + 1
  # One tower: GMF has its embeddings and w_g; MLP its embeddings, the first layer and w_m.
  gmf = models.build("neumf", 5219, 25181, dim=20, towers="gmf")
  mlp = models.build("neumf", 5219, 25181, dim=20, towers="mlp")
  assert gmf.count_params() == 30400 * 20 + 20 + 1
  assert mlp.count_params() == 30400 * 20 + 2 * 20 * 20 + 2 * 20 + 1


def test_losses_closed_form():
  y_pred = tf.constant([[2.0, 0.0, 1.0], [-1.0, 3.0, -2.0]])
  softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
  bce = np.mean([(softplus(-2.0) + softplus(0.0) + softplus(1.0)) / 3,
                 (softplus(1.0) + softplus(3.0) + softplus(-2.0)) / 3])
  m = small_neumf(loss="bce")
  assert float(m.compute_loss(y_pred=y_pred)) == pytest.approx(bce, rel=1e-5)
  bpr = np.mean(softplus(-np.array([2.0, 1.0, -4.0, 1.0])))
  m = small_neumf(loss="bpr")
  assert float(m.compute_loss(y_pred=y_pred)) == pytest.approx(bpr, rel=1e-5)
  # l2 over the batch's four embedding rows of each pair, averaged over the batch.
  m = small_neumf(l2=0.1)
  x = {"user": np.array([1, 4]), "item": np.array([[0, 2, 3], [6, 0, 5]])}
  rows = sum(np.sum(layer.embeddings.numpy()[idx] ** 2)
             for layer, idx in ((m.user_gmf, x["user"]), (m.user_mlp, x["user"]),
                                (m.item_gmf, x["item"]), (m.item_mlp, x["item"])))
  assert float(m.compute_loss(x=x, y_pred=y_pred)) == pytest.approx(bce + 0.1 * rows / 2,
                                                                    rel=1e-5)
  assert float(small_neumf().compute_loss(y_pred=tf.constant([[100.0, -100.0]]))) < 1e-30


@pytest.mark.parametrize("towers", ["both", "mlp"])
def test_serialization_round_trip(tmp_path, towers):
  m = small_neumf(hidden=[5, 2], loss="bpr", num_negatives=3, towers=towers)
  path = str(tmp_path / "m.keras")
  m.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, models.NeuMF)
  config = loaded.get_config()
  assert (config["hidden"], config["loss"], config["num_negatives"], config["towers"]) == (
      [5, 2], "bpr", 3, towers)
  np.testing.assert_allclose(loaded.score_all(tf.range(6)), m.score_all(tf.range(6)), atol=1e-5)


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_one_training_step_lowers_loss(tiny, loss):
  keras.utils.set_random_seed(0)
  m = models.build("neumf", tiny.num_users, tiny.num_items, dim=8, loss=loss, num_negatives=4,
                   init_stddev=0.1)
  m.compile(optimizer=keras.optimizers.Adam(0.01))
  batch = next(iter(m.make_train_dataset(tiny, 256, seed=0)))
  assert batch["item"].shape[1] == 5
  before = float(m.compute_loss(x=batch, y_pred=m(batch)))
  m.train_on_batch(batch)
  assert float(m.compute_loss(x=batch, y_pred=m(batch))) < before


def test_bad_arguments_are_refused():
  for kwargs in (dict(dim=0), dict(hidden=[4, 0]), dict(loss="mse"), dict(num_negatives=0),
                 dict(l2=-1.0), dict(towers="gmf_only")):
    with pytest.raises(ValueError):
      models.build("neumf", 3, 4, **kwargs)
