"""Resuming a killed training run: the whole training state, written atomically every epoch.

At the end of every epoch whose loss is finite, `CheckpointCallback` writes `<workdir>/
checkpoint.npz` (one file, written to a temporary name and renamed, so a reader sees the previous
checkpoint or the new one, never a mix): every variable training reads or moves (the student's
weights and random-seed states, the optimizer's slots and step counter, the method's sampler
state: RRD / CD lists, DCD corrections, RD's epoch and seed), the validation callback's early-
stopping state and best weights, the method's refresh records, the losses so far, and the
configuration it belongs to. `restore` puts it all back before `fit` continues from the next
epoch; with the trainers' epoch-seeded pipelines (`pipelines.epoch_batches(first_epoch=...)`) and
per-epoch seeded samplers a resumed run computes what the uninterrupted run computes. The file is
removed once the run's outputs are written, so the same command later trains afresh.

Keras' `BackupAndRestore` is not used: it saves the model's weights and the epoch, but not
sampler variables held outside Keras layers, nor the early-stopping state.
"""

import dataclasses
import json
import os

import keras
import numpy as np

from tfkd import io
from tfkd.errors import ConfigError

FILE = "checkpoint.npz"
# Settings a resumed run may change without invalidating the checkpoint.
_MAY_CHANGE = ("epochs", "verbose", "teacher", "data_dir", "workdir", "strategy", "logical_cpus")


def fingerprint(config):
  """The configuration a checkpoint belongs to, as JSON-able data."""
  data = dataclasses.asdict(config)
  for key in _MAY_CHANGE:
    data.pop(key, None)
  return json.loads(json.dumps(data, sort_keys=True, default=str))


@dataclasses.dataclass
class State:
  """What is restored besides variables."""
  epoch: int = 0  # epochs completed
  stopped: bool = False  # early stopping ended the run
  losses: list = dataclasses.field(default_factory=list)
  train_seconds: float = 0.0


class Checkpoint:
  """The training state of one run: `variables` (in a fixed order) plus the validation callback
  and the method's records."""

  def __init__(self, workdir, config, variables, validation, method):
    self.path = os.path.join(workdir, FILE)
    self.fingerprint = fingerprint(config)
    self.variables, self.validation, self.method = list(variables), validation, method

  def save(self, state: State):
    arrays = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(self.variables)}
    best = self.validation.best_weights or []
    arrays.update({f"best{i}": w for i, w in enumerate(best)})
    meta = {"state": dataclasses.asdict(state), "fingerprint": self.fingerprint,
            "num_variables": len(self.variables), "num_best": len(best),
            "validation": self.validation.get_state(), "method": self.method_history()}
    with io.atomic_path(self.path) as tmp:
      np.savez(tmp, meta=json.dumps(meta), **arrays)

  def method_history(self):
    return self.method.get_history() if self.method is not None else {}

  def restore(self):
    """Loads the checkpoint into the variables; returns its State (a fresh one when none)."""
    if not os.path.isfile(self.path):
      return State()
    try:
      with np.load(self.path) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    except Exception as e:  # zipfile, OSError, ValueError: a damaged file
      raise ConfigError(f"{self.path}: corrupt checkpoint ({type(e).__name__}: {e}); delete it "
                        "to train from the start") from None
    if meta["fingerprint"] != self.fingerprint:
      keys = sorted(k for k in set(meta["fingerprint"]) | set(self.fingerprint)
                    if meta["fingerprint"].get(k) != self.fingerprint.get(k))
      raise ConfigError(f"{self.path}: checkpoint of another configuration (differs in "
                        f"{', '.join(keys)}); delete it or use another --workdir")
    shapes = [tuple(arrays[f"v{i}"].shape) for i in range(meta["num_variables"])]
    if shapes != [tuple(v.shape) for v in self.variables]:
      raise ConfigError(f"{self.path}: checkpoint variables do not match this model "
                        f"({len(shapes)} saved, {len(self.variables)} expected)")
    for i, variable in enumerate(self.variables):
      variable.assign(arrays[f"v{i}"])
    best = [arrays[f"best{i}"] for i in range(meta["num_best"])]
    self.validation.set_state(meta["validation"], best or None)
    if self.method is not None:
      self.method.set_history(meta["method"])
    return State(**meta["state"])

  def remove(self):
    if os.path.isfile(self.path):
      os.unlink(self.path)


class CheckpointCallback(keras.callbacks.Callback):
  """Saves the checkpoint at the end of every epoch with a finite loss (a NaN epoch keeps the
  last good one). Runs after the validation callback, so its decision is included."""

  def __init__(self, checkpoint, state: State, clock):
    super().__init__()
    self.checkpoint, self.state, self.clock = checkpoint, state, clock

  def on_epoch_end(self, epoch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is None or not np.isfinite(loss):
      return
    self.state.epoch = epoch + 1
    self.state.losses.append(float(loss))
    self.state.stopped = bool(self.model.stop_training)
    self.state.train_seconds = self.clock()
    self.checkpoint.save(self.state)
