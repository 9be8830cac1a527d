"""`tf.distribute` strategies for the trainers: "default" (one device), "mirrored" (every device of
this host: its GPUs, else its CPU split into `logical_cpus` devices) and "multi_worker" (many hosts,
each process started with the same command and its own `TF_CONFIG`).

What training does under a strategy: the models, the optimizer and the Distiller are built in the
strategy's scope (mirrored variables); the input pipeline and the methods' sampler state are built
outside it (plain variables the replicas read; callbacks refresh them between steps). The batch
size stays the global one: Keras splits each batch across the replicas, and the losses divide by
the number of replicas (`scale_for_replicas`), so the summed gradient is the global batch's mean
gradient. Negatives and samples are drawn in the pipeline before the split, so every replica has
its own. Keras' multi-step loop does not run distributed iterators here, so a strategy with more
than one replica runs one step per execution.

Multi-worker: every worker runs the whole program on the same data (each takes its share of every
global batch); gradients are all-reduced, so all workers hold the same weights and compute the
same validation, early stopping and sampler refreshes. The chief (worker 0) writes the outputs;
the others write theirs into `<workdir>/.worker-<i>` (their checkpoint included: a restarted
cluster resumes every worker from its own copy), removed when the run ends. Keras 3.15's fit
all-reduces each log value with `strategy.reduce("MEAN", v, axis=0)` under this strategy, which
fails on scalars: the models' `train_step` hands the logs over as 1-vectors
(`tfkd.models.fit.FitModel`).
"""

import json
import os


import tensorflow as tf

from tfkd.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")


def split_cpu(logical_cpus):
  """Splits the host CPU into `logical_cpus` logical devices (before TensorFlow initialises its
  devices; a no-op for 0 or 1)."""
  if logical_cpus <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  want = [tf.config.LogicalDeviceConfiguration()] * logical_cpus
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == logical_cpus:
    return
  try:
    tf.config.set_logical_device_configuration(cpu, want)
  except RuntimeError:
    raise ConfigError(f"--logical_cpus={logical_cpus}: TensorFlow's devices are already "
                      "initialised in this process; split the CPU before any TF op") from None


_MADE = {}


def get(name, logical_cpus=0):
  """The strategy named `name` (one per process: a teacher trained first shares it)."""
  if name not in STRATEGIES:
    raise ConfigError(f"strategy must be one of {STRATEGIES}, got {name!r}")
  if name not in _MADE:
    _MADE[name] = _make(name, logical_cpus)
  return _MADE[name]


def _make(name, logical_cpus):
  split_cpu(logical_cpus)
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if tf.config.list_logical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
  # multi_worker
  if logical_cpus > 1:
    raise ConfigError("--logical_cpus applies to --strategy=mirrored; a multi-worker run uses "
                      "one device per worker")
  raw = os.environ.get("TF_CONFIG", "")
  try:
    parsed = json.loads(raw) if raw else {"cluster": {}, "task": {"type": "worker", "index": 0}}
    cluster, task = parsed["cluster"], parsed["task"]
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    task["type"], int(task["index"])
  except (ValueError, KeyError, TypeError):
    raise ConfigError("TF_CONFIG: expected JSON {\"cluster\": {\"worker\": [\"host:port\", "
                      "...]}, \"task\": {\"type\": \"worker\", \"index\": i}} for "
                      f"--strategy=multi_worker, got {raw!r}") from None
  if workers < 1:
    raise ConfigError("TF_CONFIG: --strategy=multi_worker needs a cluster with at least one "
                      f"worker, got {raw!r}")
  return tf.distribute.MultiWorkerMirroredStrategy()


def multi_worker(strategy):
  """True under a MultiWorkerMirroredStrategy that spans several workers."""
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and
          strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def worker_id(strategy):
  """0 on the chief (the worker that writes the outputs; always 0 without multi-worker)."""
  if not multi_worker(strategy):
    return 0
  resolver = strategy.cluster_resolver
  if resolver.task_type == "chief":
    return 0
  # With a separate chief, worker i is the (i + 1)-th process; else worker 0 is the chief.
  has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
  return resolver.task_id + 1 if has_chief else resolver.task_id


def worker_workdir(strategy, workdir):
  """Where this worker writes: `workdir` on the chief, `<workdir>/.worker-<i>` elsewhere."""
  i = worker_id(strategy)
  return workdir if i == 0 else os.path.join(workdir, f".worker-{i}")


def scale_for_replicas(loss):
  """loss / replicas: per-replica losses whose summed gradients are the global mean's."""
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  return loss if replicas == 1 else loss / tf.cast(replicas, loss.dtype)
