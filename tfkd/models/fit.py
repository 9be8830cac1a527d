"""The Keras model class every trained tfkd model derives from (`Recommender`, `Distiller`).

It exists because Keras 3.15's TF trainer needs two changes under a `tf.distribute` strategy,
both in its private hooks (see the class docstring); keeping them in one class beside the models
means no model or trainer patches Keras itself.
"""

import keras
import tensorflow as tf

from tfkd.distribute import multi_worker


class FitModel(keras.Model):
  """The Keras model the trainers fit (every `Recommender`, the `Distiller`): Keras' TF trainer
  with two changes its private hooks need under a strategy, and `fit` not asking Keras to
  shuffle (the pipelines do; Keras would only warn).

  - `_maybe_symbolic_build`: under any strategy Keras peeks one batch off the training iterator
    and all-reduces it (MEAN) to build the model symbolically, even when everything is built.
    That peek costs a batch and an extra pass of the epoch-counting pipeline, and the all-reduce
    of a dict of int ids fails under MultiWorkerMirroredStrategy. The trainers build the model
    and the optimizer before `fit`, so it is skipped then.
  - `train_step`: under multi-worker, the scalar logs are handed over as 1-vectors: Keras 3.15
    reduces them with `strategy.reduce("MEAN", v, axis=0)`, which needs an axis 0 (the result
    is a scalar again).
  """

  def fit(self, *args, shuffle=False, **kwargs):
    # tfkd's pipelines shuffle each epoch themselves; Keras's default (True) only warns on tf.data.
    return super().fit(*args, shuffle=shuffle, **kwargs)

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    if not (self.built and self.optimizer is not None and self.optimizer.built):
      super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

  def train_step(self, data):
    logs = super().train_step(data)
    if not multi_worker(tf.distribute.get_strategy()):
      return logs
    return {k: tf.reshape(v, [1]) if hasattr(v, "shape") and v.shape.rank == 0 else v
            for k, v in logs.items()}
