"""Exports load in TF-Serving's loader and return the in-memory model's top-N, seen excluded."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver

from conftest import REPO
from tfkd import models, serving
from tfkd.errors import ConfigError

TOP_N = 7


def random_model(name, dataset, seed=0):
  """Every registered model, with random weights large enough that its scores have no ties."""
  model = models.build_for(name, dataset)
  rng = np.random.default_rng(seed)
  for v in model.weights:
    if v.dtype.startswith("float"):
      v.assign(rng.normal(size=v.shape).astype(v.dtype))
  return model


def oracle_top(model, dataset, users, n):
  """NumPy: score_all, seen training items to -inf, the n best (ids, scores)."""
  scores = np.array(model.score_all(tf.constant(users, tf.int32)), np.float64)
  indptr, items = dataset.train_csr()
  for row, u in enumerate(users):
    scores[row, items[indptr[u]:indptr[u + 1]]] = -np.inf
  order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
  return order, np.take_along_axis(scores, order, 1)


def tf1_run(export_path, signature, user_ids):
  """Runs a signature through tf.compat.v1.saved_model.loader.load (TF-Serving's loader)."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_path)
    sig = meta.signature_def[signature]
    return session.run({k: v.name for k, v in sig.outputs.items()},
                       {sig.inputs["user_id"].name: user_ids})


@pytest.fixture
def exported(tiny, tmp_path):
  model = random_model("bpr", tiny)
  path = serving.export(model, tiny, str(tmp_path / "models" / "student"), top_n=TOP_N)
  return model, path


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_tf1_loader_top_n_equals_model_with_seen_excluded(tiny, tmp_path, name):
  model = random_model(name, tiny)
  path = serving.export(model, tiny, str(tmp_path / name), top_n=TOP_N)
  users = np.arange(tiny.num_users, dtype=np.int64)
  out = tf1_run(path, "serving_default", users)
  want_ids, want_scores = oracle_top(model, tiny, users, TOP_N)
  np.testing.assert_array_equal(out["item_ids"], want_ids)
  np.testing.assert_allclose(out["scores"], want_scores, rtol=1e-5, atol=1e-5)
  assert out["known_user"].all()
  indptr, items = tiny.train_csr()
  for u in users:  # no seen item comes back
    assert not set(out["item_ids"][u]) & set(items[indptr[u]:indptr[u + 1]])


def test_unknown_users_get_popular_items(exported, tiny):
  _, path = exported
  out = tf1_run(path, "serving_default", np.array([3, tiny.num_users, -1, 10**9], np.int64))
  np.testing.assert_array_equal(out["known_user"], [True, False, False, False])
  counts = tiny.item_popularity()
  popular = np.argsort(-counts, kind="stable")[:TOP_N]
  for row in (1, 2, 3):
    np.testing.assert_array_equal(out["item_ids"][row], popular)
    np.testing.assert_array_equal(out["scores"][row], counts[popular])


def test_raw_signature_maps_raw_ids_both_ways(exported, tiny):
  model, path = exported
  users = np.array([0, 5, 17])
  raw = np.array([str(r).encode() for r in tiny.user_raw_ids[users]] + [b"no-such-user"],
                 dtype=object)
  out = tf1_run(path, "serving_raw", raw)
  want_ids, want_scores = oracle_top(model, tiny, users, TOP_N)
  want_raw = np.array([[str(tiny.item_raw_ids[i]).encode() for i in row] for row in want_ids])
  np.testing.assert_array_equal(out["item_ids"][:3].astype(bytes), want_raw)
  np.testing.assert_allclose(out["scores"][:3], want_scores, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out["known_user"], [True, True, True, False])
  popular = np.argsort(-tiny.item_popularity(), kind="stable")[:TOP_N]
  assert [x.decode() for x in out["item_ids"][3]] == [str(tiny.item_raw_ids[i]) for i in popular]


def test_users_with_fewer_unseen_items_than_n_get_minus_one(tiny, tmp_path):
  model = random_model("bpr", tiny)
  path = serving.export(model, tiny, str(tmp_path / "all"), top_n=tiny.num_items)
  out = tf1_run(path, "serving_default", np.array([0, 1], np.int64))
  indptr, _ = tiny.train_csr()
  for u in (0, 1):
    seen = indptr[u + 1] - indptr[u]
    assert seen > 0
    assert (out["item_ids"][u, -seen:] == -1).all() and np.isneginf(out["scores"][u, -seen:]).all()
    assert (out["item_ids"][u, :-seen] >= 0).all()


def test_versions_are_never_overwritten_and_failures_leave_nothing(tiny, tmp_path, monkeypatch):
  model = random_model("bpr", tiny)
  base = str(tmp_path / "student")
  assert serving.export(model, tiny, base, top_n=3).endswith(os.sep + "1")
  assert serving.export(model, tiny, base, top_n=3).endswith(os.sep + "2")
  assert serving.export(model, tiny, base, top_n=3, version=7).endswith(os.sep + "7")
  with pytest.raises(ConfigError, match="already exists"):
    serving.export(model, tiny, base, top_n=3, version=2)
  with pytest.raises(ConfigError, match="top_n"):
    serving.export(model, tiny, base, top_n=tiny.num_items + 1)

  def broken(*args, **kwargs):
    raise OSError("disk full")
  monkeypatch.setattr(serving, "write_warmup", broken)
  with pytest.raises(OSError):
    serving.export(model, tiny, base, top_n=3)
  assert sorted(os.listdir(base)) == ["1", "2", "7"]  # no version 8, no temporary directory


def test_warmup_records_are_prediction_logs_that_run(exported, tiny):
  from tensorflow_serving.apis import prediction_log_pb2
  _, path = exported
  records = list(tf.data.TFRecordDataset(os.path.join(path, serving.WARMUP_FILE)))
  assert len(records) >= 2
  signatures = set()
  for record in records:
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    request = log.predict_log.request
    assert request.model_spec.name == "student"
    signatures.add(request.model_spec.signature_name)
    users = tf.make_ndarray(request.inputs["user_id"])
    out = tf1_run(path, request.model_spec.signature_name, users)
    assert out["item_ids"].shape == (len(users), TOP_N) and out["known_user"].all()
  assert signatures == {"serving_default", "serving_raw"}


def test_models_config_lists_every_export_base(exported, tiny, tmp_path):
  model, _ = exported
  serving.export(model, tiny, str(tmp_path / "models" / "teacher"), top_n=3)
  (tmp_path / "models" / "notes").mkdir()  # not a model: no version with a saved_model.pb
  path = serving.write_models_config(str(tmp_path / "models"), "/models")
  text = open(path).read()
  assert text.count("config {") == 2
  assert 'name: "student"' in text and 'base_path: "/models/student"' in text
  assert 'name: "teacher"' in text and "notes" not in text
  assert oct(os.stat(path).st_mode & 0o077) != "0o0"  # readable by the serving container


def cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  exe = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=300)


# Every model's export is checked with TF-Serving's own loader above; the CLI check runs on two
# (a built-in model and the example one registered by conftest), each call a fresh process.
@pytest.mark.parametrize("name", ["bpr", "squared_mf"])
def test_saved_model_cli_show_and_run(tiny, tmp_path, name):
  model = random_model(name, tiny)
  path = serving.export(model, tiny, str(tmp_path / name), top_n=TOP_N)
  shown = cli("show", "--dir", path, "--all")
  assert shown.returncode == 0, shown.stderr
  for text in ("signature_def['serving_default']", "signature_def['serving_raw']",
               "outputs['item_ids']", "outputs['known_user']", "DT_INT64", "DT_STRING"):
    assert text in shown.stdout
  ran = cli("run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
            "--input_exprs", "user_id=[4]")
  assert ran.returncode == 0, ran.stderr
  first = ran.stdout.split("Result for output key item_ids:")[1].split("]")[0]
  got = [int(x) for x in first.replace("[", " ").split()]
  assert got == list(oracle_top(model, tiny, [4], TOP_N)[0][0])


def test_entry_point_exports_a_trained_workdir(tmp_path):
  from trainers import train
  workdir = str(tmp_path / "w")
  with flagsaver.flagsaver(workdir=workdir, dataset="synthetic", num_candidates=20, epochs=1,
                           eval_every=1, dim=4, batch_size=512):
    train.main(["train"])
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

  def export(*args):
    return subprocess.run([sys.executable, "-m", "export.saved_model", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)

  base = str(tmp_path / "exports" / "bpr")
  r = export(f"--workdir={workdir}", f"--export_dir={base}", "--top_n=5")
  assert r.returncode == 0, r.stderr
  assert os.path.isfile(os.path.join(base, "1", "saved_model.pb"))
  assert os.path.isfile(str(tmp_path / "exports" / "models.config"))
  from tfkd import training
  from tfkd.data import load_dataset
  dataset = load_dataset("synthetic", num_candidates=20)
  model, _ = training.load_model(workdir, dataset)
  out = tf1_run(os.path.join(base, "1"), "serving_default", np.arange(9, dtype=np.int64))
  np.testing.assert_array_equal(out["item_ids"], oracle_top(model, dataset, np.arange(9), 5)[0])
  # Bad input: one line naming it, non-zero exit, nothing written.
  r = export(f"--workdir={workdir}", f"--export_dir={base}", "--version=1")
  assert r.returncode == 1 and "already exists" in r.stderr.strip().splitlines()[-1], r.stderr
  from export import saved_model
  from tfkd.errors import TfkdError
  for kwargs, words in ((dict(workdir=f"{tmp_path}/none"), "not a directory"),
                        (dict(workdir=str(tmp_path)), "flags.txt"),
                        (dict(workdir=workdir, top_n=100000), "top_n")):
    with pytest.raises(TfkdError, match=words):
      saved_model.run(export_dir=base, **{"top_n": 5, **kwargs})
  assert os.listdir(base) == ["1"]
