"""`tf.distribute` strategies for the trainers: "default" (one device), "mirrored" (every device of
this host: its GPUs, else its CPU split into `logical_cpus` devices) and "multi_worker" (many hosts,
from the `TF_CONFIG` environment variable; refused for now, see `_make`).

What training does under a strategy: the models, the optimizer and the Distiller are built in the
strategy's scope (mirrored variables); the input pipeline and the methods' sampler state are built
outside it (plain variables the replicas read; callbacks refresh them between steps). The batch
size stays the global one: Keras splits each batch across the replicas, and the losses divide by
the number of replicas (`scale_for_replicas`), so the summed gradient is the global batch's mean
gradient. Negatives and samples are drawn in the pipeline before the split, so every replica has
its own. Keras' multi-step loop does not run distributed iterators here, so a strategy with more
than one replica runs one step per execution.
"""

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
  # multi_worker:
  # Keras 3.15's fit() cannot run under MultiWorkerMirroredStrategy: it all-reduces every scalar
  # log with strategy.reduce("MEAN", v, axis=0) (keras/src/backend/tensorflow/trainer.py,
  # reduce_per_replica), which fails on 0-d tensors. Refuse clearly instead of failing inside fit.
  raise ConfigError("--strategy=multi_worker is not supported with Keras 3.15: its fit() "
                    "all-reduces scalar logs along axis 0 under MultiWorkerMirroredStrategy and "
                    "fails; use --strategy=mirrored (one host, many devices)")


def skip_symbolic_build(model):
  """Keras' TF trainer, under any strategy, peeks one batch off the training iterator and
  all-reduces it (MEAN) to build the model symbolically, even when everything is built. That
  peek costs a batch and an extra pass of the epoch-counting pipeline, and the all-reduce of a
  dict of int ids fails under MultiWorkerMirroredStrategy. The trainers build the model and the
  optimizer before `fit`, so models route `_maybe_symbolic_build` here and skip it then."""
  return model.built and model.optimizer is not None and model.optimizer.built


def scale_for_replicas(loss):
  """loss / replicas: per-replica losses whose summed gradients are the global mean's."""
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  return loss if replicas == 1 else loss / tf.cast(replicas, loss.dtype)
