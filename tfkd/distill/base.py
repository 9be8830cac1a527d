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

import dataclasses
from typing import Optional

import keras
import tensorflow as tf
from absl import flags

from tfkd import config_flags, distribute
from tfkd.distill import teacher as teacher_lib
from tfkd.errors import ConfigError
from tfkd.models.fit import FitModel

METHODS = {}


def register(name, config_class, flag_prefix=None):
  """Registers a method under `name`, with the dataclass of its settings: their flags are
  `--<flag_prefix><field>` (default prefix `<name>_`, see `tfkd.config_flags`)."""
  def wrap(cls):
    if name in METHODS:
      raise ValueError(f"method {name!r} is already registered")
    cls.name, cls.config_class = name, config_class
    cls.flag_prefix = f"{name}_" if flag_prefix is None else flag_prefix
    METHODS[name] = cls
    return cls
  return wrap


def define_flags(fv=flags.FLAGS):
  """Defines every registered method's flags on `fv` (idempotent)."""
  for cls in METHODS.values():
    config_flags.define_flags(cls.config_class, cls.flag_prefix, fv)


def config_from_flags(name, fv=flags.FLAGS):
  """The config of method `name` from the parsed flags. A flag of another method that was set
  (on the command line or in a flagfile) is refused in one line rather than ignored."""
  cls = get(name)
  own = config_flags.flag_names(cls.config_class, cls.flag_prefix)
  for other in sorted(METHODS):
    foreign = config_flags.flag_names(METHODS[other].config_class,
                                      METHODS[other].flag_prefix) - own
    for flag in sorted(f for f in foreign if fv[f].present):
      raise ConfigError(f"--{flag} is a setting of --method={other}, not of --method={name}")
  return config_flags.from_flags(cls.config_class, cls.flag_prefix, fv)


def get(name):
  try:
    return METHODS[name]
  except KeyError:
    raise ConfigError(f"unknown method {name!r}; expected one of {', '.join(sorted(METHODS))}")


@dataclasses.dataclass
class Forward:
  """A training step's forward pass: the student's scores of the batch's own items [B, N] and,
  when a method scores its lists in the same pass (CD's kd_pass "training"), theirs: dense
  [B, W], or [P] for the valid entries only, at `where` [P, 2] (row, column)."""

  scores: tf.Tensor
  list_scores: Optional[tf.Tensor] = None
  where: Optional[tf.Tensor] = None


class Method:
  """Base class. Subclasses set `user_k` / `item_k` (the teacher ranking lengths they need),
  declare their loss parts (`part_names`) and compute them (`loss_parts`)."""

  name = "none"
  user_k = 0
  item_k = 0
  # True when `loss_parts` keeps static shapes, so the step can be XLA-compiled (`tfkd.xla`).
  xla_ready = False

  def setup(self, dataset, student, teacher, knowledge):
    """Called once before training with the teacher's rankings (`knowledge`)."""

  def part_names(self):
    """Every part of the loss, in the order `loss_parts` returns them: the student's own term
    first ("base_loss"; RD and CD reweight it as "cf_loss"), then the method's."""
    return ["base_loss"]

  def forward(self, student, x):
    """The student's training forward pass of the batch `x`, as a `Forward`. By default the
    student's own scores; CD can score its sampled items in the same (corrupted, dropped-out)
    pass."""
    return Forward(student(x, training=True))

  def loss_parts(self, student, x, out=None):
    """{part: weighted scalar}, summed into the training loss: the one function a method
    implements. `out` is `forward`'s output; None outside a training step, where only the
    method's own parts are computed (the student's term needs the pass)."""
    return self.student_part(student, x, out)

  def student_part(self, student, x, out):
    """The student's own objective, unweighted: {"base_loss": ...} ({} without `out`)."""
    return {} if out is None else {"base_loss": student.objective(x, out.scores)}

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
      self.write_scalars(self.fn(epoch), epoch)

  def write_scalars(self, scalars, step):
    """Writes {name: number} to `writer` at `step` (nothing without a writer or a dict)."""
    if isinstance(scalars, dict) and self.writer is not None:
      with self.writer.as_default(step=step):
        for name, value in scalars.items():
          tf.summary.scalar(name, value)
      self.writer.flush()


class Distiller(FitModel):
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
    if not isinstance(y_pred, Forward):  # Keras's own calls outside `fit` (e.g. evaluate)
      y_pred = Forward(y_pred)
    parts = self.method.loss_parts(self.student, x, y_pred)
    if set(parts) != set(self.trackers):
      raise KeyError(f"loss parts {list(parts)} differ from those the method declared, "
                     f"{list(self.trackers)}")
    for name, value in parts.items():
      self.trackers[name].update_state(value)
    # Each replica's share: the summed gradients are the global batch's (`tfkd.distribute`).
    return distribute.scale_for_replicas(tf.add_n(list(parts.values())))

  def declare_parts(self):
    """One tracker per loss part of the method (call after `method.setup`)."""
    for name in self.method.part_names():
      self.trackers[name] = keras.metrics.Mean(name=name)

  @property
  def metrics(self):
    return [*super().metrics, *self.trackers.values()]
