"""The training library functions behind `python -m trainers.train` and `trainers.distill`.

`train(config)` loads the dataset, builds the model, fits it with Adam on the model's own tf.data
pipeline, evaluates on validation every `eval_every` epochs with early stopping (best weights
restored), evaluates on test, and writes the work directory (`tfkd.workdir`). `distill(config)`
does the same for a student distilled from a teacher (trained first when missing).
"""

import dataclasses
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfkd import callbacks, distribute, io, models, optimizers, resume
from tfkd.data import load_dataset
from tfkd.errors import ConfigError
from tfkd.evaluation import Evaluator
from tfkd.run_config import DistillConfig, TrainConfig  # noqa: F401  (the public names)
from tfkd.workdir import (METRICS_FILE, MODEL_FILE, WEIGHTS_FILE, load_model,  # noqa: F401
                          prepare_workdir, save_model)


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
  _compile(config, fit_model, student, strategy)
  validation = callbacks.ValidationCallback(
      Evaluator(dataset, "valid", config.eval_protocol, config.cutoffs, config.eval_batch_size),
      config.eval_every, config.patience, config.early_stop_metric,
      tf.summary.create_file_writer(os.path.join(config.workdir, "logs", "validation")),
      target=student)
  method_variables = method.state_variables() if method is not None else []
  checkpoint = resume.Checkpoint(
      config.workdir, config, [*student.variables, *fit_model.optimizer.variables,
                               *method_variables], validation, method)
  state = checkpoint.restore()
  if state.epoch:
    logging.info("resuming %s after epoch %d", config.workdir, state.epoch)
  start = time.time() - state.train_seconds
  if not state.stopped and state.epoch < config.epochs:
    _fit(config, dataset, fit_model, student, strategy, method, validation, checkpoint, state,
         start)
  elif validation.best_weights is not None:  # stopped before the kill: put the best weights back
    validation.on_train_end()
  metrics = _evaluate_and_write(config, dataset, student, validation.best_epoch, state.epoch,
                                time.time() - start, extra_metrics)
  checkpoint.remove()
  if distribute.worker_id(strategy):  # a non-chief worker's copy of the outputs
    shutil.rmtree(config.workdir, ignore_errors=True)
  return metrics


def _compile(config, fit_model, student, strategy):
  """Compiles `fit_model` and creates every variable (student and optimizer) before `fit`, so a
  checkpoint can be restored into them."""
  # Keras' multi-step loop fails on distributed iterators here: one step per execution then.
  steps = config.steps_per_execution if strategy.num_replicas_in_sync == 1 else 1
  with strategy.scope():
    fit_model.compile(optimizer=optimizers.get(config.optimizer, config.learning_rate),
                      steps_per_execution=steps, jit_compile=config.jit_compile)
    student.build_for_dataset()
    fit_model.built = True  # the student is; a Distiller has no variables of its own
    fit_model.optimizer.build(fit_model.trainable_variables)


def _train_data(config, dataset, student, strategy, first_epoch):
  data = student.make_train_dataset(dataset, config.batch_size, seed=config.seed,
                                    first_epoch=first_epoch)
  if distribute.multi_worker(strategy):  # every worker builds all batches and keeps its share
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(options)
  return data


def _callbacks(config, fit_model, method, validation, checkpoint, state, start):
  logdir = os.path.join(config.workdir, "logs")
  method_callbacks = list(fit_model.method_callbacks) if method is not None else []
  refreshes = [c for c in method_callbacks if hasattr(c, "writer")]
  if refreshes:  # what the refreshes measure (DCD's rank discrepancy) goes to logs/distill
    refresh_writer = tf.summary.create_file_writer(os.path.join(logdir, "distill"))
    for callback in refreshes:
      callback.writer = refresh_writer
  # Keras's progress bar first: it ends its epoch line before the validation line is logged.
  return [*([callbacks.ProgressBar()] if config.verbose else []), *method_callbacks,
          keras.callbacks.TensorBoard(logdir, write_graph=False, profile_batch=0),
          validation, callbacks.EtaCallback(config.epochs), keras.callbacks.TerminateOnNaN(),
          resume.CheckpointCallback(checkpoint, state, lambda: time.time() - start)]


def _fit(config, dataset, fit_model, student, strategy, method, validation, checkpoint, state,
         start):
  """Runs `fit` from the checkpoint's epoch; a diverged loss is a one-line error."""
  history = fit_model.fit(
      _train_data(config, dataset, student, strategy, state.epoch), epochs=config.epochs,
      initial_epoch=state.epoch,
      callbacks=_callbacks(config, fit_model, method, validation, checkpoint, state, start),
      verbose=callbacks.console_verbosity(config.verbose), shuffle=False)  # the pipeline shuffles
  losses = history.history.get("loss", [])
  if losses and not np.isfinite(losses[-1]):
    kept = (f"; the last good checkpoint (epoch {state.epoch}) is kept in {checkpoint.path}"
            if state.epoch else "")
    raise ConfigError(f"training diverged: loss is {losses[-1]} at epoch "
                      f"{state.epoch + 1}; lower --learning_rate{kept}")


def _evaluate_and_write(config, dataset, student, best_epoch, epochs_run, train_seconds,
                        extra_metrics):
  """Evaluates on valid and test; writes the model, test_ranks.npz and metrics.json."""
  results = evaluate_splits(student, dataset, config.eval_protocol, config.cutoffs,
                            config.eval_batch_size)
  save_model(student, config.model, dataset, config.workdir)
  with io.atomic_path(os.path.join(config.workdir, "test_ranks.npz")) as tmp:
    np.savez(tmp, users=results["test"].users, ranks=results["test"].ranks)
  metrics = {split: r.metrics for split, r in results.items()}
  metrics.update(best_epoch=best_epoch, epochs_run=epochs_run,
                 train_seconds=round(train_seconds, 2),
                 seconds_per_epoch=round(train_seconds / max(epochs_run, 1), 3),
                 protocol=config.eval_protocol, dataset=dataset.name, seed=config.seed,
                 num_parameters=int(student.count_params()))
  metrics.update(extra_metrics())
  io.write_json(os.path.join(config.workdir, METRICS_FILE), metrics)
  logging.info("test %s", " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics["test"].items())))
  return metrics


def train(config: TrainConfig):
  """Trains, evaluates and saves one model; returns the metrics dict written to metrics.json."""
  config, dataset, strategy = _setup(config)
  with strategy.scope():
    model = _build(config, dataset)
  return fit_evaluate_save(config, dataset, model, model, strategy)


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

  method = distill_lib.get(config.method)(config.method_config)
  config, dataset, strategy = _setup(config)  # validates: --jit_compile refuses some methods
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
