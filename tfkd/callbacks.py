"""Keras callbacks of a training run: validation with early stopping, progress, time left."""

import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging


class ValidationCallback(keras.callbacks.Callback):
  """Evaluates every `every` epochs; keeps the best weights of `target` (the fitted model by
  default; the student when a Distiller is fitted); stops after `patience` evaluations without
  improvement; restores the best weights when training ends."""

  def __init__(self, evaluator, every, patience, metric, writer=None, target=None):
    super().__init__()
    self.evaluator, self.every, self.patience, self.metric = evaluator, every, patience, metric
    self.writer, self.target = writer, target
    self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, 0, None, 0
    self.history = []

  def _weights(self):
    return (self.target or self.model).weights

  def get_state(self):
    return {"best": None if np.isinf(self.best) else float(self.best),
            "best_epoch": self.best_epoch, "wait": self.wait, "history": self.history}

  def set_state(self, state, best_weights):
    self.best = -np.inf if state["best"] is None else state["best"]
    self.best_epoch, self.wait = state["best_epoch"], state["wait"]
    self.history, self.best_weights = list(state["history"]), best_weights

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self.every:
      return
    result = self.evaluator.evaluate(self.model).metrics
    self.history.append(dict(result, epoch=epoch + 1))
    if self.writer is not None:
      with self.writer.as_default(step=epoch + 1):
        for name, value in result.items():
          tf.summary.scalar(f"valid/{name}", value)
      self.writer.flush()
    logging.info("epoch %d: valid %s", epoch + 1,
                 " ".join(f"{k}={v:.4f}" for k, v in sorted(result.items())))
    if result[self.metric] > self.best:
      self.best, self.best_epoch, self.wait = result[self.metric], epoch + 1, 0
      self.best_weights = [w.numpy() for w in self._weights()]
    else:
      self.wait += 1
      if self.wait >= self.patience:
        self.model.stop_training = True

  def on_train_end(self, logs=None):
    if self.best_weights is not None:
      for variable, value in zip(self._weights(), self.best_weights):
        variable.assign(value)


def console_verbosity(verbose):
  """Keras's `verbose`: a progress bar (1) only on a terminal; a line per epoch (2) in a log."""
  return 2 if verbose == 1 and not sys.stdout.isatty() else verbose


class ProgressBar(keras.callbacks.ProgbarLogger):
  """Keras's progress bar, its step count capped at the epoch's steps: with
  `steps_per_execution` > 1 Keras reports the last step a call could have run, past the end."""

  def on_train_batch_end(self, batch, logs=None):
    super().on_train_batch_end(batch if self.target is None else min(batch, self.target - 1),
                               logs)


class EtaCallback(keras.callbacks.Callback):
  """After the first epoch a run completes, logs its time and the most the epoch cap can take,
  so a long run states its expected length once it can be measured."""

  def __init__(self, epochs):
    super().__init__()
    self.epochs, self.start = epochs, None

  def on_epoch_begin(self, epoch, logs=None):
    if self.start is None:
      self.start = (epoch, time.time())

  def on_epoch_end(self, epoch, logs=None):
    if self.start is None or epoch != self.start[0]:
      return
    seconds = time.time() - self.start[1]
    left = self.epochs - epoch - 1
    logging.info("epoch %d took %.1f s: at most %s more for the %d epochs left (early stopping "
                 "usually ends sooner)", epoch + 1, seconds, _duration(seconds * left), left)


def _duration(seconds):
  minutes = seconds / 60
  return f"{seconds:.0f} s" if minutes < 1 else (
      f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h")
