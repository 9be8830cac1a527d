"""`--jit_compile`: the XLA forms of the training step (`tfkd.xla`) compute what the plain ones do.

Each test runs the same computation in a plain `tf.function` and in one XLA compiles, from the
same state, and compares: the batch's distinct rows, RRD / DCD loss parts and their gradients,
the optimizers' sparse updates, and whole training steps of a Distiller."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver

from tfkd import models, optimizers, training, xla
from tfkd.distill import DCDConfig, Distiller, RRDConfig, teacher as teacher_lib
from tfkd.distill.dcd import DCD
from tfkd.distill.rrd import RRD
from tfkd.errors import ConfigError
from tfkd.models import ops


def both(fn, *args):
  """fn(*args) traced plainly and under XLA, as NumPy structures."""
  as_numpy = lambda out: tf.nest.map_structure(lambda t: tf.convert_to_tensor(t).numpy(), out)
  return (as_numpy(tf.function(fn)(*args)),
          as_numpy(tf.function(fn, jit_compile=True)(*args)))


def test_in_xla_only_inside_compiled_functions():
  seen = []

  def probe(x):
    seen.append(xla.in_xla())
    return x + 1

  probe(tf.constant(1.0))
  tf.function(probe)(tf.constant(1.0))
  tf.function(probe, jit_compile=True)(tf.constant(1.0))
  tf.function(lambda x: tf.function(probe)(x), jit_compile=True)(tf.constant(2.0))
  assert seen == [False, False, True, True]


def test_distinct_rows_weigh_each_value_once_in_both_forms():
  rows = tf.constant([7, 3, 7, 0, 3, 3, 9], tf.int32)
  fn = lambda r: (ops.distinct(r), ops.first_of_run(ops.distinct(r)))
  (plain, plain_w), (compiled, compiled_w) = both(fn, rows)
  np.testing.assert_array_equal(plain, [7, 3, 0, 9])  # tf.unique: first-seen order
  np.testing.assert_array_equal(plain_w, [1, 1, 1, 1])
  np.testing.assert_array_equal(compiled, [0, 3, 3, 3, 7, 7, 9])  # all, sorted
  np.testing.assert_array_equal(compiled_w, [1, 1, 0, 0, 1, 0, 1])
  # Weighted, the compiled rows are the distinct ones: a mean over them is the same mean.
  assert sorted(compiled[compiled_w > 0]) == sorted(plain)


def test_gather_dot_scores_and_gradients_equal_under_xla():
  rng = np.random.default_rng(0)
  rows = tf.constant(rng.normal(size=(3, 4)), tf.float32)
  table = tf.constant(rng.normal(size=(7, 4)), tf.float32)
  cols = tf.constant(rng.integers(0, 7, size=(3, 20)), tf.int32)  # repeats within and across
  upstream = tf.constant(rng.normal(size=(3, 20)), tf.float32)

  def fn(r, t):
    with tf.GradientTape() as tape:
      tape.watch([r, t])
      scores = ops.gather_dot(r, t, cols)
      loss = tf.reduce_sum(scores * upstream)
    d_rows, d_table = tape.gradient(loss, [r, t])
    return scores, d_rows, tf.convert_to_tensor(d_table)

  plain, compiled = both(fn, rows, table)
  for a, b in zip(plain, compiled):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def distill_setup(d, method_name, list_pairs=0, list_items="positives"):
  """A BPR teacher / student pair on `d` with RRD or DCD lists long enough (18 columns per row,
  over ops.LONG_LIST) for the gathered-list path; both sides; lists drawn / refreshed."""
  keras.utils.set_random_seed(0)
  teacher = models.build("bpr", d.num_users, d.num_items, dim=8, init_stddev=0.3)
  student = models.build("bpr", d.num_users, d.num_items, dim=4, init_stddev=0.3, l2=1e-2)
  rrd_config = RRDConfig(top=30, num_interesting=8, num_uninteresting=10, item_top=20,
                         item_num_interesting=8, item_num_uninteresting=10, weight=0.1,
                         item_weight=0.05, list_pairs=list_pairs, list_items=list_items)
  if method_name == "rrd":
    method = RRD(rrd_config)
  else:
    method = DCD(DCDConfig(rrd=rrd_config, top=30, item_top=20, num_under=10, num_over=10,
                           item_num_under=8, item_num_over=8, user_weight=0.1,
                           item_weight=0.1, mu=0.1))
  knowledge = {"user_topk": teacher_lib.user_topk(teacher, d, method.user_k),
               "item_topk": teacher_lib.item_topk(teacher, d, method.item_k)}
  method.setup(d, student, teacher, knowledge)
  for callback in method.callbacks():
    callback.on_epoch_begin(0)
  distiller = Distiller(student, teacher, method)
  distiller.declare_parts()
  return distiller, method


def batches(d, n):
  from tfkd.data import pipelines
  return list(pipelines.pairwise(d, 32, seed=0).take(n))


@pytest.mark.parametrize("method_name,list_pairs,list_items", [
    ("rrd", 0, "positives"), ("dcd", 0, "positives"), ("dcd", 12, "batch")])
def test_loss_parts_and_gradients_equal_under_xla(tiny, method_name, list_pairs, list_items):
  distiller, method = distill_setup(tiny, method_name, list_pairs, list_items)
  student = distiller.student
  x = batches(tiny, 1)[0]
  # A batch with repeated users and items: the compiled form's zero-weight rows are exercised.
  n = list_pairs or len(x["user"])
  assert len(set(x["user"].numpy()[:n])) < n

  def fn(x):
    with tf.GradientTape() as tape:
      parts = method.loss_parts(student, x, method.forward(student, x))
      total = tf.add_n(list(parts.values()))
    grads = tape.gradient(total, student.trainable_variables)
    return parts, [tf.convert_to_tensor(g) for g in grads]

  (plain_parts, plain_grads), (xla_parts, xla_grads) = both(fn, x)
  expected = {"base_loss", "rrd_loss", "ir_rrd_loss"} | (
      {"ucd_loss", "icd_loss"} if method_name == "dcd" else set())
  assert set(plain_parts) == expected
  for name in expected:
    assert plain_parts[name] > 0
    np.testing.assert_allclose(xla_parts[name], plain_parts[name], rtol=1e-5, err_msg=name)
  for a, b in zip(plain_grads, xla_grads):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("cls", [optimizers.Adam, optimizers.LazyAdam])
def test_sparse_updates_equal_under_xla(cls):
  rng = np.random.default_rng(3)
  w0 = rng.normal(size=(6, 3)).astype(np.float32)
  steps = [([0, 2, 2], rng.normal(size=(3, 3))), ([5, 1], rng.normal(size=(2, 3))),
           ([2, 2, 2, 4], rng.normal(size=(4, 3)))]
  results = []
  for jit in (False, True):
    var, opt = keras.Variable(w0), cls(0.1)
    opt.build([var])
    apply = tf.function(lambda g: opt.apply_gradients([(g, var)]), jit_compile=jit,
                        reduce_retracing=True)
    for rows, values in steps:
      apply(tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(rows, tf.int32),
                             tf.constant([6, 3])))
    results.append(var.numpy())
  np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)
  if cls is optimizers.LazyAdam:  # rows never in a batch are untouched in both forms
    np.testing.assert_array_equal(results[1][3], w0[3])
  assert not np.allclose(results[1], w0)


@pytest.mark.parametrize("method_name", ["rrd", "dcd"])
def test_distiller_steps_equal_with_jit_compile(tiny, method_name):
  xs = batches(tiny, 3)
  weights = []
  for jit in (False, True):
    distiller, _ = distill_setup(tiny, method_name)
    distiller.compile(optimizer=optimizers.Adam(0.05), jit_compile=jit)
    logs = [distiller.train_on_batch(x, return_dict=True) for x in xs]
    assert distiller.jit_compile == jit
    weights.append([w.numpy() for w in distiller.student.weights])
    assert logs[-1]["rrd_loss"] > 0
  for a, b in zip(*weights):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_models_and_methods_without_static_shapes_are_refused():
  with pytest.raises(ConfigError, match="model CDAE"):
    training.TrainConfig(workdir="w", model="cdae", jit_compile=True).validate()
  with pytest.raises(ConfigError, match="--strategy=default"):
    training.TrainConfig(workdir="w", strategy="mirrored", jit_compile=True).validate()
  training.TrainConfig(workdir="w", jit_compile=True).validate()  # BPR: fine
  with pytest.raises(ConfigError, match="method 'rrd'"):
    xla.check_method(RRD(RRDConfig(variant="full")))
  xla.check_method(RRD(RRDConfig()))


def test_distill_entry_refuses_a_method_xla_cannot_compile(tmp_path, capsys):
  from trainers import distill
  workdir = tmp_path / "out"
  with flagsaver.flagsaver(workdir=str(workdir), dataset="synthetic", method="rd",
                           teacher_dir=str(tmp_path / "teacher"), jit_compile=True):
    with pytest.raises(SystemExit) as exit_:
      distill.main(["prog"])
  assert exit_.value.code == 1
  last = capsys.readouterr().err.strip().splitlines()[-1]
  assert last.startswith("tfkd: error: --jit_compile: method 'rd'"), last
  assert not (tmp_path / "teacher").exists() and not (workdir / "metrics.json").exists()
