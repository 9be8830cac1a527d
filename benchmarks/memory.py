"""Peak memory of the whole-catalog passes (teacher rankings, evaluation, DCD and CD-SG refreshes)
on a synthetic catalog of any size: they work in chunks of rows, so memory grows with
chunk x catalog, not users x items.

  python benchmarks/memory.py --num_users=30000 --num_items=40000
  python benchmarks/memory.py --num_users=30000 --num_items=41000 --interactions_per_user=34 \
      --source=presplit --phases=data,train_epoch,knowledge,evaluate,dcd_setup,dcd_refresh,dcd_epoch

Prints one JSON object: per phase, the process's resident memory when the phase starts and its
peak during the phase (MiB; Linux: VmHWM, reset between phases through /proc/self/clear_refs),
the phase's seconds, and the size of the dense users x items float32 matrix the chunking avoids.
Phases: `data` (generate, prepare, split), `knowledge` (teacher's top-K both sides), `evaluate`
(full-ranking test evaluation), `dcd_setup` (the state DCD keeps per user and per item: RRD's
excluded-pair hash tables over each row's observed and top-K columns, the correction-list
variables; O((users + items) x K), not chunked), `dcd_refresh` (both sides' correction lists,
union candidates, without the kept teacher ranks, which are dense by design), `cd_setup` and
`cd_refresh` (CD-SG: the student's full ranking of every user, rank-aware draws, teacher
logits; without the teacher-row cache, which is dense by design). Two more phases run when
`--phases` names them: `train_epoch` (one Keras epoch of the dim-200 teacher, BPR with Adam,
batch 1024) and `dcd_epoch` (one epoch of DCD distillation into the student, after `dcd_setup`);
their seconds are an epoch's time on this machine, under whatever else runs on it.
`--source=presplit` writes the catalog's random leave-one-out split as three CSV files with string
ids (`u<n>`, `i<n>`) first and measures, in `data`, loading them as `--dataset=presplit` does
(reading, indexing, checking); `synthetic` (default) generates in memory. `--presplit_dir`
keeps those files, e.g. to run a trainer on them (`--dataset=presplit --data_header
--allow_cold`: a random split holds a few test items no training row has).
Models are BPR with random weights (teacher dim 200, student dim 20): costs do not depend on the
weights' values. tests/test_memory.py runs this at two sizes and checks the growth.

The script pins glibc's mmap threshold at 128 KiB (`mallopt`) before anything allocates: by
default the threshold grows with the largest block freed, after which big buffers come from the
heap and freed ones may or may not go back to the system, so a pass's "RSS at start" moved by
~50 MiB from run to run and its growth with it. Pinned, a freed buffer leaves RSS at once and the
peak is the pass's live memory.
"""

import ctypes
import json
import time

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _pin_mmap_threshold(nbytes=128 * 1024):
  try:
    ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, nbytes)
  except OSError:  # not glibc: measure with the default allocator
    pass


_pin_mmap_threshold()

import os
import tempfile

from absl import app, flags

flags.DEFINE_integer("num_users", 30000, "Users of the synthetic catalog.")
flags.DEFINE_integer("num_items", 40000, "Items of the synthetic catalog.")
flags.DEFINE_integer("interactions_per_user", 20, "Interactions per user.")
flags.DEFINE_integer("chunk_size", 1024, "Rows per chunk of every whole-catalog pass.")
flags.DEFINE_integer("top_k", 50, "Teacher list length (RRD's and DCD's top lists use it).")
flags.DEFINE_enum("source", "synthetic", ["synthetic", "presplit"], "Generate the catalog in "
                  "memory, or write it as presplit CSV files first and load them.")
flags.DEFINE_string("presplit_dir", None, "With --source=presplit: write the CSV files here and "
                    "keep them (default: a temporary directory).")
flags.DEFINE_list("phases", ["data", "knowledge", "evaluate", "dcd_setup", "dcd_refresh",
                            "cd_setup", "cd_refresh"],
                  "Phases to run, in order (each needs the ones before it: data, knowledge, and "
                  "a refresh or an epoch its setup); also train_epoch and dcd_epoch.")
FLAGS = flags.FLAGS
ORDER = ("data", "train_epoch", "knowledge", "evaluate", "dcd_setup", "dcd_refresh", "dcd_epoch",
         "cd_setup", "cd_refresh")


def _status(field):
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024.0
  raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak():
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def _synthetic():
  return dict(num_users=FLAGS.num_users, num_items=FLAGS.num_items,
              interactions_per_user=FLAGS.interactions_per_user)


def write_presplit(root):
  """Writes the synthetic catalog's random leave-one-out split as train / valid / test CSV files
  with string ids; returns their paths."""
  from tfkd.data import load_dataset
  d = load_dataset("synthetic", num_candidates=0, use_cache=False,
                   synthetic_params=_synthetic())
  paths = []
  for name, users, items in (("train", d.train_users, d.train_items),
                             *((s, *_heldout(d, s)) for s in ("valid", "test"))):
    paths.append(os.path.join(root, f"{name}.csv"))
    with open(paths[-1], "w") as f:
      f.write("user,item\n")
      f.writelines(f"u{u},i{i}\n" for u, i in zip(users.tolist(), items.tolist()))
  return paths


def _heldout(d, split):
  users = d.heldout_users(split)
  return users, d.heldout_items(split)[users]


def data(state):
  from tfkd import models
  from tfkd.data import catalog, load_dataset
  if FLAGS.source == "presplit":
    state["dataset"] = load_dataset(
        "presplit", spec=catalog.presplit_spec(*state["files"], header=True), num_candidates=0,
        use_cache=False, accept=("unseen_item",))
  else:
    state["dataset"] = load_dataset("synthetic", num_candidates=0, split="random",
                                    use_cache=False, synthetic_params=_synthetic())
  d = state["dataset"]
  state["teacher"] = models.build_for("bpr", d, dim=200)
  state["student"] = models.build_for("bpr", d, dim=20)
  for model in (state["teacher"], state["student"]):
    model.build_for_dataset()


def knowledge(state):
  from tfkd.distill import teacher as teacher_lib
  d, k = state["dataset"], FLAGS.top_k
  state["knowledge"] = {
      "user_topk": teacher_lib.user_topk(state["teacher"], d, 2 * k, FLAGS.chunk_size),
      "item_topk": teacher_lib.item_topk(state["teacher"], d, 2 * k, FLAGS.chunk_size)}


def evaluate(state):
  from tfkd.evaluation import Evaluator
  Evaluator(state["dataset"], "test", "full", (10, 50), FLAGS.chunk_size).evaluate(
      state["student"])


def dcd_setup(state):
  # cache_bytes=0: the chunked path. By default (--dcd_cache_mb) the union refresh keeps the
  # teacher's rank of every entry of each side between refreshes, dense by design.
  from tfkd.distill import dcd, rrd
  k = FLAGS.top_k
  config = dcd.DCDConfig(rrd=rrd.RRDConfig(top=2 * k, num_interesting=k // 2,
                                           num_uninteresting=k // 2), top=2 * k,
                         item_top=2 * k, num_under=k // 2, num_over=k // 2,
                         item_num_under=k // 2, item_num_over=k // 2,
                         chunk_size=FLAGS.chunk_size, cache_bytes=0)
  state["dcd"] = dcd.DCD(config)
  state["dcd"].setup(state["dataset"], state["student"], state["teacher"], state["knowledge"])


def cd_setup(state):
  # cache_bytes=0: the chunked path. The default cache (--cd_cache_mb) keeps the teacher's rows
  # between draws, a dense users x items float32 matrix by design, bounded by that flag.
  from tfkd.distill import cd
  state["cd"] = cd.CD(cd.CDConfig(guide="student", sample_size=FLAGS.top_k,
                                  chunk_size=FLAGS.chunk_size, cache_bytes=0))
  state["cd"].setup(state["dataset"], state["student"], state["teacher"], state["knowledge"])


def _fit_one_epoch(model, train_model, state):
  import keras
  train_model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=32)
  train_model.fit(model.make_train_dataset(state["dataset"], batch_size=1024, seed=0), epochs=1,
                  verbose=0)


def train_epoch(state):
  _fit_one_epoch(state["teacher"], state["teacher"], state)


def dcd_epoch(state):
  from tfkd import distill
  distiller = distill.Distiller(state["student"], state["teacher"], state["dcd"])
  distiller.declare_parts()
  _fit_one_epoch(state["student"], distiller, state)


PHASES = {"data": data, "train_epoch": train_epoch, "knowledge": knowledge, "evaluate": evaluate,
          "dcd_setup": dcd_setup, "dcd_refresh": lambda state: state["dcd"].refresh(0),
          "dcd_epoch": dcd_epoch, "cd_setup": cd_setup,
          "cd_refresh": lambda state: state["cd"].refresh(0)}


def main(argv):
  del argv
  unknown = set(FLAGS.phases) - set(ORDER)
  if unknown:
    raise app.UsageError(f"unknown phases {sorted(unknown)}; expected some of {ORDER}")
  result = {"num_users": FLAGS.num_users, "num_items": FLAGS.num_items,
            "chunk_size": FLAGS.chunk_size, "top_k": FLAGS.top_k,
            "interactions_per_user": FLAGS.interactions_per_user, "source": FLAGS.source,
            "dense_matrix_mib": round(FLAGS.num_users * FLAGS.num_items * 4 / 2**20, 1),
            "phases": {}}
  import tfkd.distill  # noqa: F401  (TensorFlow and every module a phase uses: loaded before
  import tfkd.evaluation  # noqa: F401  the first phase, not measured in it)
  state = {}
  with tempfile.TemporaryDirectory() as root:
    if FLAGS.source == "presplit":  # before any phase: not measured
      os.makedirs(FLAGS.presplit_dir or root, exist_ok=True)
      state["files"] = write_presplit(FLAGS.presplit_dir or root)
    for name in (n for n in ORDER if n in FLAGS.phases):
      start_rss = _status("VmRSS")
      _reset_peak()
      t = time.time()
      PHASES[name](state)
      result["phases"][name] = {"start_mib": round(start_rss, 1),
                                "peak_mib": round(_status("VmHWM"), 1),
                                "seconds": round(time.time() - t, 2)}
      if name == "data":
        d = state["dataset"]
        result["catalog"] = {"users": d.num_users, "items": d.num_items,
                             "interactions": d.num_interactions}
  result["peak_mib"] = max((p["peak_mib"] for p in result["phases"].values()), default=0.0)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
