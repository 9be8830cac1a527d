"""The distillation method contract, the method registry, and the `Distiller` model.

A method (one file per method, registered by name) turns the student's own training batches into
weighted loss parts (`loss_parts`). Sampler state that changes during training (RRD's lists,
redrawn every epoch; DCD's corrections, recomputed from the student's ranks) lives in variables
refreshed by the method's Keras callbacks (`callbacks`) and read by `loss_parts` inside the
training step, so a batch prefetched by `tf.data` never sees a stale or half-refreshed copy. The
student's own `tf.data` pipeline feeds the distiller unchanged.

The `Distiller` follows Keras 3's `keras/src/distillation/distiller.py`: the teacher is frozen,
only the student's variables are trained, `distiller(x) == student(x)`, and each loss part is
tracked by its own `keras.metrics.Mean` (progress bar, history, TensorBoard).
"""

import keras
import tensorflow as tf

from tfkd import distribute
from tfkd.distill import teacher as teacher_lib
from tfkd.errors import ConfigError

METHODS = {}


def register(name):
  def wrap(cls):
    if name in METHODS:
      raise ValueError(f"method {name!r} is already registered")
    cls.name = name
    METHODS[name] = cls
    return cls
  return wrap


def get(name):
  try:
    return METHODS[name]
  except KeyError:
    raise ConfigError(f"unknown method {name!r}; expected one of {', '.join(sorted(METHODS))}")


class Method:
  """Base class. Subclasses set `user_k` / `item_k` (the teacher ranking lengths they need)."""

  name = "none"
  user_k = 0
  item_k = 0
  # True when `loss_parts` keeps static shapes, so the step can be XLA-compiled (`tfkd.xla`).
  xla_ready = False

  def setup(self, dataset, student, teacher, knowledge):
    """Called once before training with the teacher's rankings (`knowledge`)."""

  def base_parts(self, student, x, y, y_pred, training):
    """{part name: scalar}: the student's own objective in the total loss. By default its whole
    `compute_loss`, unweighted; RD and CD reweight it, CD replaces its data term."""
    return {"base_loss": student.objective(x, y_pred)}

  def base_part_names(self):
    return ["base_loss"]

  def forward(self, student, x):
    """The student's training forward pass of the batch `x`: the `y_pred` that `base_parts` and
    `loss_parts` receive. By default the student's own; CD can widen it with its sampled items so
    both of its terms come from one (corrupted, dropped-out) pass."""
    return student(x, training=True)

  def loss_parts(self, student, x, y_pred=None):
    """{part name: weighted scalar loss} added to the student's own loss; `y_pred` is
    `forward`'s output (None outside a training step)."""
    return {}

  def part_names(self):
    """Names of the loss parts `loss_parts` returns (each gets a tracker)."""
    return []

  def callbacks(self):
    return []

  def state_variables(self):
    """The tf.Variables of the method's sampler state: saved in every resume checkpoint."""
    return []

  def get_history(self):
    """JSON-able records kept for metrics.json (e.g. DCD's refreshes): saved with the state."""
    return {}

  def set_history(self, history):
    """Restores what `get_history` returned."""

  def extra_metrics(self):
    """Method-specific results merged into metrics.json (e.g. DCD's discrepancy per refresh)."""
    return {}


class EpochCallback(keras.callbacks.Callback):
  """Calls `fn(epoch)` at the start of every `every`-th epoch (0, every, 2 every, ...): how
  methods redraw or refresh sampler state before the steps that read it.

  When `fn` returns {name: number} (what the refresh measured) and `writer` is set (the trainers
  set `<workdir>/logs/distill`), each is written as a TensorBoard scalar at step `epoch` (the
  epochs completed).
  """

  writer = None

  def __init__(self, fn, every=1):
    super().__init__()
    if every <= 0:
      raise ValueError(f"every must be positive, got {every}")
    self.fn, self.every = fn, int(every)

  def on_epoch_begin(self, epoch, logs=None):
    if epoch % self.every == 0:
      scalars = self.fn(epoch)
      if isinstance(scalars, dict) and self.writer is not None:
        with self.writer.as_default(step=epoch):
          for name, value in scalars.items():
            tf.summary.scalar(name, value)
        self.writer.flush()


class Distiller(distribute.FitModel):
  """Student + frozen teacher + method: trains the student on its loss plus the method's parts.

  With `dataset`, the method is set up here: the teacher's rankings are computed (or taken from
  `knowledge`, as `teacher.load_or_compute` caches them) and the loss parts declared, so
  `Distiller(student, teacher, method, dataset=data)` is ready to `compile` and `fit`. Without
  it the caller runs `method.setup(...)` and `declare_parts()` (the trainers do, under their
  distribution strategy).

  `fit` adds the method's callbacks (`method_callbacks`: its samplers' redraws and refreshes) to
  those the caller passes, unless the caller passed them.
  """

  def __init__(self, student, teacher, method, dataset=None, knowledge=None, **kwargs):
    super().__init__(**kwargs)
    self.student, self.teacher, self.method = student, teacher, method
    self.teacher.trainable = False
    self.trackers = {}
    self._method_callbacks = None
    if dataset is not None:
      if knowledge is None:
        knowledge = teacher_lib.compute(teacher, dataset, method.user_k, method.item_k)
      method.setup(dataset, student, teacher, knowledge)
      self.declare_parts()

  @property
  def method_callbacks(self):
    """The method's callbacks, made once (so `fit` can tell whether the caller passed them)."""
    if self._method_callbacks is None:
      self._method_callbacks = tuple(self.method.callbacks())
    return self._method_callbacks

  def fit(self, *args, callbacks=None, **kwargs):
    given = list(callbacks or [])
    missing = [c for c in self.method_callbacks if not any(c is g for g in given)]
    return super().fit(*args, callbacks=[*missing, *given], **kwargs)

  def call(self, inputs, training=False):
    if training:
      return self.method.forward(self.student, inputs)
    return self.student(inputs, training=False)

  def score(self, users, items):
    return self.student.score(users, items)

  def score_all(self, users):
    return self.student.score_all(users)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    parts = self.method.base_parts(self.student, x, y, y_pred, training)
    parts.update(self.method.loss_parts(self.student, x, y_pred))
    for name, value in parts.items():
      if name not in self.trackers:
        raise KeyError(f"loss part {name!r} was not declared by the method")
      self.trackers[name].update_state(value)
    # Each replica's share: the summed gradients are the global batch's (`tfkd.distribute`).
    return distribute.scale_for_replicas(tf.add_n(list(parts.values())))

  def declare_parts(self):
    """One tracker per loss part of the method (call after `method.setup`)."""
    for name in [*self.method.base_part_names(), *self.method.part_names()]:
      self.trackers[name] = keras.metrics.Mean(name=name)

  @property
  def metrics(self):
    return [*super().metrics, *self.trackers.values()]
