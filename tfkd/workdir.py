"""A run's work directory: its files, and the trained model written to and read from it.

  model.json           model name, config, dataset name and key, catalog sizes
  model.weights.h5     the best weights
  metrics.json         {"valid": {"H@5": ...}, "test": {...}, "best_epoch": ..., ...}
  test_ranks.npz       per-user ranks of the test items (for paired t-tests)
  logs/                TensorBoard logs (train, validation, distill)

Every file is written atomically.
"""

import json
import os

from tfkd import io, models
from tfkd.errors import ConfigError

MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.weights.h5"
METRICS_FILE = "metrics.json"


def prepare_workdir(workdir):
  """Creates `workdir` and checks it is writable; a one-line ConfigError otherwise."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w") as f:
      f.write("")
    os.unlink(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir!r} is not writable ({e.strerror or e})") from None


def save_model(model, name, dataset, workdir):
  """Writes model.json and model.weights.h5 atomically."""
  with io.atomic_path(os.path.join(workdir, WEIGHTS_FILE)) as tmp:
    model.save_weights(tmp)
  config = {k: v for k, v in model.get_config().items()
            if k not in ("name", "trainable", "dtype", "num_users", "num_items")}
  io.write_json(os.path.join(workdir, MODEL_FILE), {
      "model": name, "config": config, "dataset": dataset.name, "dataset_key": dataset.key,
      "num_users": dataset.num_users, "num_items": dataset.num_items})


def load_model(workdir, dataset=None):
  """Rebuilds a trained model from a workdir; refuses one made for another dataset."""
  meta_path, weights = os.path.join(workdir, MODEL_FILE), os.path.join(workdir, WEIGHTS_FILE)
  if not (os.path.isfile(meta_path) and os.path.isfile(weights)):
    raise ConfigError(f"{workdir}: no trained model ({MODEL_FILE} and {WEIGHTS_FILE} expected)")
  try:
    with open(meta_path) as f:
      meta = json.load(f)
    name = meta["model"]
  except (ValueError, KeyError) as e:
    raise ConfigError(f"{meta_path}: corrupt model description ({e})") from None
  if dataset is not None:
    got = (meta.get("dataset"), meta.get("num_users"), meta.get("num_items"))
    want = (dataset.name, dataset.num_users, dataset.num_items)
    if got != want or meta.get("dataset_key") != dataset.key:
      raise ConfigError(
          f"{workdir}: model trained on {got[0]} ({got[1]} users x {got[2]} items, key "
          f"{meta.get('dataset_key')}), but the dataset is {want[0]} ({want[1]} users x "
          f"{want[2]} items, key {dataset.key})")
  model = models.build(name, meta["num_users"], meta["num_items"], **meta["config"])
  try:
    model.load_weights(weights)
  except Exception as e:  # h5py and Keras raise many types for a damaged file
    raise ConfigError(f"{weights}: cannot load weights ({type(e).__name__}: {e})") from None
  return model, meta
