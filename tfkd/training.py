"""The training library function behind `python -m trainers.train`.

`train(config)` loads the dataset, builds the model, fits it with Adam on the model's own tf.data
pipeline, evaluates on validation every `eval_every` epochs with early stopping (best weights
restored), evaluates on test, and writes to `config.workdir`:

  model.json           model name, config, dataset name and key, catalog sizes
  model.weights.h5     the best weights
  metrics.json         {"valid": {"H@5": ...}, "test": {...}, "best_epoch": ..., ...}
  test_ranks.npz       per-user ranks of the test items (for paired t-tests)
  logs/                TensorBoard logs (training loss per epoch, validation metrics)

Every file is written atomically.
"""

import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfkd import distribute, io, models, optimizers, resume, xla
from tfkd.data import load_dataset
from tfkd.errors import ConfigError
from tfkd.evaluation import Evaluator

MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.weights.h5"
METRICS_FILE = "metrics.json"


@dataclasses.dataclass
class TrainConfig:
  """Everything a training run depends on (the trainers' flags map onto it one to one)."""

  workdir: str
  model: str = "bpr"
  model_config: dict = dataclasses.field(default_factory=dict)
  dataset: str = "citeulike-derrd"
  data_dir: Optional[str] = None
  dataset_kwargs: dict = dataclasses.field(default_factory=dict)  # load_dataset's spec/recipe/split
  split_seed: int = 0
  num_candidates: int = 499
  seed: int = 0
  epochs: int = 500
  batch_size: int = 1024
  learning_rate: float = 1e-3
  optimizer: str = "adam"
  eval_protocol: str = "sampled"
  eval_every: int = 5
  patience: int = 10
  early_stop_metric: str = "H@5"
  cutoffs: Sequence[int] = (5, 10)
  eval_batch_size: int = 1024
  steps_per_execution: int = 32
  jit_compile: bool = False  # XLA-compile the training step (`tfkd.xla`; BPR, RRD, DCD)
  verbose: int = 1  # 0: a line per validation; 1: Keras's progress bar; 2: a line per epoch
  deterministic: bool = False  # TF op determinism: the same seed gives the same run, bit for bit
  strategy: str = "default"  # tf.distribute strategy: default, mirrored, multi_worker
  logical_cpus: int = 0  # split the CPU into this many devices (mirrored on a CPU-only host)
  pretrained: Sequence[str] = ()  # workdirs of trained models that initialise this one
  pretrain_alpha: float = 0.5  # NeuMF pre-training: weight of the GMF tower's output layer

  def validate(self):
    for name in ("epochs", "batch_size", "eval_every", "patience", "eval_batch_size",
                 "steps_per_execution"):
      if getattr(self, name) <= 0:
        raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
    if self.learning_rate <= 0:
      raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
    if self.optimizer not in optimizers.OPTIMIZERS:
      raise ConfigError(f"optimizer must be one of {sorted(optimizers.OPTIMIZERS)}, "
                        f"got {self.optimizer!r}")
    if self.strategy not in distribute.STRATEGIES:
      raise ConfigError(f"strategy must be one of {distribute.STRATEGIES}, got {self.strategy!r}")
    if self.logical_cpus < 0:
      raise ConfigError(f"logical_cpus must be >= 0, got {self.logical_cpus}")
    if not 0.0 <= self.pretrain_alpha <= 1.0:
      raise ConfigError(f"pretrain_alpha must be in [0, 1], got {self.pretrain_alpha}")
    if self.eval_protocol not in ("sampled", "full"):
      raise ConfigError(f"eval_protocol must be 'sampled' or 'full', got {self.eval_protocol!r}")
    if self.num_candidates < 0:
      raise ConfigError(f"num_candidates must be >= 0, got {self.num_candidates}")
    if self.eval_protocol == "sampled" and self.num_candidates == 0:
      raise ConfigError("eval_protocol 'sampled' needs num_candidates > 0")
    known = {f"{k}@{n}" for k in ("H", "M", "NDCG") for n in self.cutoffs}
    if self.early_stop_metric not in known:
      raise ConfigError(f"early_stop_metric must be one of {sorted(known)}, "
                        f"got {self.early_stop_metric!r}")
    model_cls = models.get(self.model)
    if self.jit_compile:
      xla.check_model(model_cls, self.strategy)


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


def evaluate_splits(model, dataset, protocol, cutoffs, batch_size):
  return {split: Evaluator(dataset, split, protocol, cutoffs, batch_size).evaluate(model)
          for split in ("valid", "test")}


def _setup(config):
  """Validates `config`, makes its strategy and loads its data; returns (config, dataset,
  strategy). A multi-worker run's non-chief workers write into `<workdir>/.worker-<i>`."""
  config.validate()
  strategy = distribute.get(config.strategy, config.logical_cpus)  # before any other TF op
  config = dataclasses.replace(config,
                               workdir=distribute.worker_workdir(strategy, config.workdir))
  prepare_workdir(config.workdir)
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    # Process-wide and irreversible: ops without a deterministic kernel raise instead of
    # running nondeterministically.
    tf.config.experimental.enable_op_determinism()
  dataset = config_dataset(config)
  logging.info("%s", dataset.summary())
  return config, dataset, strategy


def config_dataset(config):
  """The prepared, split dataset a config trains on (cached after the first load)."""
  return load_dataset(config.dataset, data_dir=config.data_dir, split_seed=config.split_seed,
                      num_candidates=config.num_candidates, **config.dataset_kwargs)


def _build(config, dataset):
  """The config's model for `dataset`, initialised from `config.pretrained` when given."""
  try:
    model = models.build_for(config.model, dataset, **config.model_config)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"model {config.model!r}: {e}") from None
  # A run with a checkpoint restores every variable from it (or refuses it): the pretrained
  # models are neither needed nor read then.
  if config.pretrained and not os.path.isfile(os.path.join(config.workdir, resume.FILE)):
    try:
      pretrained = {d: load_model(d, dataset)[0] for d in config.pretrained}
    except ConfigError as e:
      # Every load failure (missing, corrupt, other dataset) gets the same reminder of what
      # --pretrained takes, next to warm_start's own checks of the towers.
      raise ConfigError(f"pretrained: {e} (--pretrained takes the work directories of trained "
                        f"--towers=gmf and --towers=mlp runs on this dataset, e.g. of "
                        f"configs/neumf_gmf.flags and configs/neumf_mlp.flags)") from None
    try:
      model.warm_start(pretrained, config.pretrain_alpha)
    except ValueError as e:
      raise ConfigError(f"pretrained: {e}") from None
    logging.info("initialised from %s", ", ".join(config.pretrained))
  return model


def fit_evaluate_save(config, dataset, fit_model, student, strategy, method=None,
                      extra_metrics=dict):
  """Fits `fit_model` (the student itself, or a Distiller around it with `method`) with
  validation-based early stopping, evaluates `student` on valid and test, writes the workdir;
  returns metrics.

  Resumable: the training state is checkpointed every epoch (`tfkd.resume`); a run started again
  with the same configuration and workdir continues from the last completed epoch and ends as the
  uninterrupted run would.
  """
  # Keras' multi-step loop fails on distributed iterators here: one step per execution then.
  steps = config.steps_per_execution if strategy.num_replicas_in_sync == 1 else 1
  with strategy.scope():
    fit_model.compile(optimizer=optimizers.get(config.optimizer, config.learning_rate),
                      steps_per_execution=steps, jit_compile=config.jit_compile)
    student.build_for_dataset()
    fit_model.built = True  # the student is; a Distiller has no variables of its own
    fit_model.optimizer.build(fit_model.trainable_variables)
  logdir = os.path.join(config.workdir, "logs")
  writer = tf.summary.create_file_writer(os.path.join(logdir, "validation"))
  validation = ValidationCallback(
      Evaluator(dataset, "valid", config.eval_protocol, config.cutoffs, config.eval_batch_size),
      config.eval_every, config.patience, config.early_stop_metric, writer, target=student)
  method_variables = method.state_variables() if method is not None else []
  checkpoint = resume.Checkpoint(
      config.workdir, config, [*student.variables, *fit_model.optimizer.variables,
                               *method_variables], validation, method)
  state = checkpoint.restore()
  if state.epoch:
    logging.info("resuming %s after epoch %d", config.workdir, state.epoch)
  start = time.time() - state.train_seconds
  if not state.stopped and state.epoch < config.epochs:
    train_data = student.make_train_dataset(dataset, config.batch_size, seed=config.seed,
                                            first_epoch=state.epoch)
    if distribute.multi_worker(strategy):  # every worker builds all batches and keeps its share
      options = tf.data.Options()
      options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
      train_data = train_data.with_options(options)
    method_callbacks = list(fit_model.method_callbacks) if method is not None else []
    refreshes = [c for c in method_callbacks if hasattr(c, "writer")]
    if refreshes:  # what the refreshes measure (DCD's rank discrepancy) goes to logs/distill
      refresh_writer = tf.summary.create_file_writer(os.path.join(logdir, "distill"))
      for callback in refreshes:
        callback.writer = refresh_writer
    # Keras's progress bar first: it ends its epoch line before the validation line is logged.
    callbacks = [*([ProgressBar()] if config.verbose else []), *method_callbacks,
                 keras.callbacks.TensorBoard(logdir, write_graph=False, profile_batch=0),
                 validation, EtaCallback(config.epochs), keras.callbacks.TerminateOnNaN(),
                 resume.CheckpointCallback(checkpoint, state, lambda: time.time() - start)]
    history = fit_model.fit(
        train_data, epochs=config.epochs, initial_epoch=state.epoch, callbacks=callbacks,
        verbose=console_verbosity(config.verbose), shuffle=False)  # the pipeline shuffles
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
      kept = (f"; the last good checkpoint (epoch {state.epoch}) is kept in {checkpoint.path}"
              if state.epoch else "")
      raise ConfigError(f"training diverged: loss is {losses[-1]} at epoch "
                        f"{state.epoch + 1}; lower --learning_rate{kept}")
  elif validation.best_weights is not None:  # stopped before the kill: put the best weights back
    validation.on_train_end()
  train_seconds = time.time() - start
  epochs_run = state.epoch

  results = evaluate_splits(student, dataset, config.eval_protocol, config.cutoffs,
                            config.eval_batch_size)
  save_model(student, config.model, dataset, config.workdir)
  with io.atomic_path(os.path.join(config.workdir, "test_ranks.npz")) as tmp:
    np.savez(tmp, users=results["test"].users, ranks=results["test"].ranks)
  metrics = {split: r.metrics for split, r in results.items()}
  metrics.update(best_epoch=validation.best_epoch, epochs_run=epochs_run,
                 train_seconds=round(train_seconds, 2),
                 seconds_per_epoch=round(train_seconds / max(epochs_run, 1), 3),
                 protocol=config.eval_protocol, dataset=dataset.name, seed=config.seed,
                 num_parameters=int(student.count_params()))
  metrics.update(extra_metrics())
  io.write_json(os.path.join(config.workdir, METRICS_FILE), metrics)
  checkpoint.remove()
  if distribute.worker_id(strategy):  # a non-chief worker's copy of the outputs
    shutil.rmtree(config.workdir, ignore_errors=True)
  logging.info("test %s", " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics["test"].items())))
  return metrics


def train(config: TrainConfig):
  """Trains, evaluates and saves one model; returns the metrics dict written to metrics.json."""
  config, dataset, strategy = _setup(config)
  with strategy.scope():
    model = _build(config, dataset)
  return fit_evaluate_save(config, dataset, model, model, strategy)


@dataclasses.dataclass
class DistillConfig(TrainConfig):
  """A student's training plus: the teacher (trained first when `teacher_dir` holds none) and the
  distillation method with its config."""

  teacher_dir: str = ""
  teacher: Optional[TrainConfig] = None  # how to train the teacher when teacher_dir is empty
  method: str = "rrd"
  method_config: object = None
  knowledge_chunk_size: int = 1024


def ensure_teacher(config: DistillConfig, dataset, strategy):
  """Loads the teacher from config.teacher_dir, training it there first if it holds none."""
  if not config.teacher_dir:
    raise ConfigError("--teacher_dir is required")
  if not os.path.isfile(os.path.join(config.teacher_dir, MODEL_FILE)):
    if config.teacher is None:
      raise ConfigError(f"{config.teacher_dir}: no trained teacher and no teacher config")
    if distribute.multi_worker(strategy):  # every worker would need the chief's file at once
      raise ConfigError(f"{config.teacher_dir}: no trained teacher; under "
                        "--strategy=multi_worker train it first (python -m trainers.train)")
    logging.info("no teacher in %s: training one first", config.teacher_dir)
    train(dataclasses.replace(config.teacher, workdir=config.teacher_dir))
  teacher, meta = load_model(config.teacher_dir, dataset)
  return teacher, meta


def distill(config: DistillConfig):
  """Distils the teacher into a new student; writes the student's workdir; returns metrics."""
  from tfkd import distill as distill_lib  # the methods register themselves on import

  method_cls = distill_lib.get(config.method)
  method = method_cls(config.method_config)
  if config.jit_compile:
    xla.check_method(method)
  config, dataset, strategy = _setup(config)
  teacher, _ = ensure_teacher(config, dataset, strategy)
  keras.utils.set_random_seed(config.seed)
  # Deep enough for the method and for the final rank discrepancy.
  gap_user_k, gap_item_k = distill_lib.ranks.gap_depths(dataset)
  knowledge = distill_lib.teacher.load_or_compute(
      teacher, config.teacher_dir, os.path.join(config.teacher_dir, WEIGHTS_FILE), dataset,
      max(method.user_k, gap_user_k), max(method.item_k, gap_item_k),
      config.knowledge_chunk_size)
  with strategy.scope():
    student = _build(config, dataset)
  method.setup(dataset, student, teacher, knowledge)
  with strategy.scope():
    distiller = distill_lib.Distiller(student, teacher, method)
  distiller.declare_parts()

  def extra_metrics():
    gaps = distill_lib.ranks.final_rank_gaps(student, dataset, knowledge,
                                             chunk_size=config.knowledge_chunk_size)
    return {**method.extra_metrics(), "discrepancy": gaps}

  return fit_evaluate_save(config, dataset, distiller, student, strategy, method, extra_metrics)
