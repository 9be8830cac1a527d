"""Exports a trained `Recommender` as a SavedModel that TF-Serving serves for top-N retrieval.

`export(model, dataset, base_path)` writes `<base_path>/<version>/` with two signatures:

  serving_default   user_id int64 [None]  -> item_ids int64 [None, N], scores float32 [None, N],
                                              known_user bool [None]
  serving_raw       user_id string [None] -> item_ids string [None, N], scores, known_user

Each user's top N items by `model.score_all`, excluding the items the user saw in training. The
seen items live in the SavedModel as variables (a CSR index: row splits and item ids), not as
graph constants, so the export stays far below the 2 GB protobuf limit of `saved_model.pb`; a
model's own state (its embeddings, or a user's history for sequence models) is exported with it
because the model is tracked as a whole. A user id outside the catalog (negative, too large, or a
raw id the dataset never had) gets the N most popular training items, their training counts as
scores, and `known_user` false. Positions past a user's unseen items (only when a user saw more
than `num_items - N` items) have score -inf and item id -1 (raw: "").

The version directory is built under a temporary name inside `base_path` and renamed when
complete (TF-Serving only watches integer-named directories); an existing version is never
overwritten. `assets.extra/tf_serving_warmup_requests` holds PredictionLog warm-up records for
both signatures, and `write_models_config` writes TF-Serving's `--model_config_file`.

Built with `keras.export.ExportArchive`: TF-Serving's loader (the TF1 session loader,
`tf.compat.v1.saved_model.loader.load`) cannot restore Keras 3 variables saved through a plain
`tf.Module`, while the archive's object graph restores in both loaders.
"""

import contextlib
import os
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfkd import io
from tfkd.errors import ConfigError
from tfkd.models import ops

DEFAULT_SIGNATURE = "serving_default"
RAW_SIGNATURE = "serving_raw"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MODELS_CONFIG = "models.config"


class SeenItems(keras.layers.Layer):
  """Each user's training items as non-trainable variables, and the catalog's most popular items.

  `exclude(users, scores)` sets the seen entries of `scores` [B, num_items] to -inf.
  """

  def __init__(self, dataset, top_n, **kwargs):
    super().__init__(trainable=False, **kwargs)
    indptr, indices = dataset.train_csr()
    popularity = dataset.item_popularity()
    popular = np.argsort(-popularity, kind="stable")[:top_n]
    self.row_splits = self._constant_weight("row_splits", indptr.astype(np.int64))
    self.items = self._constant_weight("items", indices.astype(np.int64))
    self.popular_items = self._constant_weight("popular_items", popular.astype(np.int64))
    self.popular_scores = self._constant_weight("popular_scores",
                                                popularity[popular].astype(np.float32))
    self.built = True

  def _constant_weight(self, name, value):
    weight = self.add_weight(name=name, shape=value.shape, dtype=str(value.dtype),
                             initializer="zeros", trainable=False)
    weight.assign(value)
    return weight

  def exclude(self, users, scores):
    rows, columns = ops.csr_rows(self.row_splits, self.items, users)
    return tf.tensor_scatter_nd_update(
        scores, tf.stack([rows, columns], axis=1),
        tf.fill(tf.shape(columns), tf.constant(-np.inf, scores.dtype)))


def _raw_ids(values, what):
  strings = [str(v) for v in np.asarray(values).tolist()]
  if len(set(strings)) != len(strings):
    raise ConfigError(f"the dataset's raw {what} ids are not unique as strings")
  return strings


class _Retrieval:
  """The signatures' functions over a model and its `SeenItems`."""

  def __init__(self, model, dataset, top_n):
    self.model, self.top_n = model, int(top_n)
    self.seen = SeenItems(dataset, top_n, name="seen_items")
    # index 0 is the out-of-vocabulary bucket, so tfkd id = lookup index - 1.
    self.user_lookup = keras.layers.StringLookup(
        vocabulary=_raw_ids(dataset.user_raw_ids, "user"), num_oov_indices=1, name="user_ids")
    self.item_lookup = keras.layers.StringLookup(
        vocabulary=_raw_ids(dataset.item_raw_ids, "item"), num_oov_indices=1, invert=True,
        oov_token="", name="item_ids")
    self.user_lookup.build([None])
    self.item_lookup.build([None])

  def top_items(self, user_id):
    users = tf.cast(tf.reshape(user_id, [-1]), tf.int64)
    known = tf.logical_and(users >= 0, users < self.model.num_users)
    safe = tf.where(known, users, tf.zeros_like(users))
    scores = tf.cast(self.model.score_all(tf.cast(safe, tf.int32)), tf.float32)
    scores = self.seen.exclude(safe, scores)
    top = tf.math.top_k(scores, k=self.top_n)
    items = tf.where(tf.math.is_inf(top.values), tf.constant(-1, tf.int64),
                     tf.cast(top.indices, tf.int64))
    batch = tf.shape(users)[0]
    popular_items = tf.broadcast_to(self.seen.popular_items[None, :], [batch, self.top_n])
    popular_scores = tf.broadcast_to(self.seen.popular_scores[None, :], [batch, self.top_n])
    return {"item_ids": tf.where(known[:, None], items, popular_items),
            "scores": tf.where(known[:, None], top.values, popular_scores),
            "known_user": known}

  def top_items_raw(self, user_id):
    users = tf.cast(self.user_lookup(tf.reshape(user_id, [-1])), tf.int64) - 1
    out = self.top_items(users)
    out["item_ids"] = self.item_lookup(out["item_ids"] + 1)
    return out


def _validate(model, dataset, top_n):
  if not 1 <= top_n <= model.num_items:
    raise ConfigError(f"top_n must be in [1, {model.num_items}] (the number of items), "
                      f"got {top_n}")
  if (model.num_users, model.num_items) != (dataset.num_users, dataset.num_items):
    raise ConfigError(f"model is {model.num_users} users x {model.num_items} items but the "
                      f"dataset {dataset.name} is {dataset.num_users} x {dataset.num_items}")


def build_archive(model, dataset, top_n=50):
  """A `keras.export.ExportArchive` with the two retrieval signatures (see the module doc)."""
  _validate(model, dataset, top_n)
  retrieval = _Retrieval(model, dataset, top_n)
  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.track(retrieval.seen)
  archive.track(retrieval.user_lookup)
  archive.track(retrieval.item_lookup)
  archive.add_endpoint(DEFAULT_SIGNATURE, retrieval.top_items,
                       input_signature=[tf.TensorSpec([None], tf.int64, name="user_id")])
  archive.add_endpoint(RAW_SIGNATURE, retrieval.top_items_raw,
                       input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
  return archive


@contextlib.contextmanager
def _portable(model):
  previous = model.portable
  model.portable = True
  try:
    yield
  finally:
    model.portable = previous


def versions(base_path):
  """The integer version directories under `base_path`, sorted."""
  if not os.path.isdir(base_path):
    return []
  return sorted(int(n) for n in os.listdir(base_path)
                if n.isdigit() and os.path.isdir(os.path.join(base_path, n)))


def write_warmup(path, dataset, model_name, num_requests=3):
  """TF-Serving warm-up records: PredictLogs for a few users, on both signatures."""
  from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
  users = np.arange(min(num_requests, dataset.num_users), dtype=np.int64)
  requests = [(DEFAULT_SIGNATURE, tf.make_tensor_proto(users[:k + 1]))
              for k in range(len(users))]
  raw = np.array([str(u).encode() for u in np.asarray(dataset.user_raw_ids)[users].tolist()],
                 dtype=object)
  requests.append((RAW_SIGNATURE, tf.make_tensor_proto(raw, dtype=tf.string)))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for signature, tensor in requests:
      request = predict_pb2.PredictRequest(
          model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
      request.inputs["user_id"].CopyFrom(tensor)
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())


def export(model, dataset, base_path, top_n=50, version=None, model_name=None):
  """Writes `<base_path>/<version>/` atomically; returns its path.

  `version` defaults to the next free integer; an existing version is refused.
  """
  base_path = os.path.abspath(base_path)
  model_name = model_name or os.path.basename(base_path)
  if version is None:
    existing = versions(base_path)
    version = existing[-1] + 1 if existing else 1
  if version < 0:
    raise ConfigError(f"version must be a non-negative integer, got {version}")
  final = os.path.join(base_path, str(version))
  if os.path.exists(final):
    raise ConfigError(f"{final} already exists; choose another --version (exports are never "
                      "overwritten)")
  _validate(model, dataset, top_n)
  try:
    os.makedirs(base_path, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base_path)
  except OSError as e:
    raise ConfigError(f"cannot write under {base_path} ({e.strerror or e})") from None
  try:
    with _portable(model):  # the served graph holds no XLA-compiled function
      build_archive(model, dataset, top_n).write_out(tmp, verbose=False)
    write_warmup(os.path.join(tmp, WARMUP_FILE), dataset, model_name)
    if os.path.exists(final):  # another writer took the version meanwhile
      raise ConfigError(f"{final} appeared while exporting; not overwritten")
    io.plain_mode(tmp)
    os.rename(tmp, final)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return final


_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def write_models_config(root, serving_root="/models"):
  """Writes `<root>/models.config` (TF-Serving's --model_config_file) listing every model base
  path under `root` (a directory holding integer version directories with a saved_model.pb).
  Paths are given as `<serving_root>/<name>`: where `root` is mounted in the serving container.
  Returns the config's path."""
  names = []
  for name in sorted(os.listdir(root)):
    base = os.path.join(root, name)
    if _NAME.match(name) and any(os.path.isfile(os.path.join(base, str(v), "saved_model.pb"))
                                 for v in versions(base)):
      names.append(name)
  entries = "".join(
      f"  config {{\n    name: \"{n}\"\n    base_path: \"{serving_root.rstrip('/')}/{n}\"\n"
      f"    model_platform: \"tensorflow\"\n  }}\n" for n in names)
  path = os.path.join(root, MODELS_CONFIG)
  io.write_text(path, f"model_config_list {{\n{entries}}}\n")
  return path
