"""Peak memory of the whole-catalog passes (teacher rankings, evaluation, DCD and CD-SG refreshes)
on a synthetic catalog of any size: they work in chunks of rows, so memory grows with
chunk x catalog, not users x items.

  python benchmarks/memory.py --num_users=30000 --num_items=40000

Prints one JSON object: per phase, the process's resident memory when the phase starts and its
peak during the phase (MiB; Linux: VmHWM, reset between phases through /proc/self/clear_refs),
the phase's seconds, and the size of the dense users x items float32 matrix the chunking avoids.
Phases: `data` (generate, prepare, split), `knowledge` (teacher's top-K both sides), `evaluate`
(full-ranking test evaluation), `dcd_setup` (the state DCD keeps per user and per item: RRD's
excluded-pair hash tables over each row's observed and top-K columns, the correction-list
variables; O((users + items) x K), not chunked), `dcd_refresh` (both sides' correction lists,
union candidates, without the kept teacher ranks, which are dense by design), `cd_setup` and
`cd_refresh` (CD-SG: the student's full ranking of every user, rank-aware draws, teacher
logits; without the teacher-row cache, which is dense by design).
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

from absl import app, flags

flags.DEFINE_integer("num_users", 30000, "Users of the synthetic catalog.")
flags.DEFINE_integer("num_items", 40000, "Items of the synthetic catalog.")
flags.DEFINE_integer("interactions_per_user", 20, "Interactions per user.")
flags.DEFINE_integer("chunk_size", 1024, "Rows per chunk of every whole-catalog pass.")
flags.DEFINE_integer("top_k", 50, "Teacher list length (RRD's and DCD's top lists use it).")
flags.DEFINE_list("phases", ["data", "knowledge", "evaluate", "dcd_setup", "dcd_refresh",
                            "cd_setup", "cd_refresh"],
                  "Phases to run, in order (each needs the ones before it: data, knowledge, and "
                  "a refresh its setup).")
FLAGS = flags.FLAGS


def _status(field):
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024.0
  raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak():
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def main(argv):
  del argv
  from tfkd import models
  from tfkd.data import load_dataset
  from tfkd.distill import cd, dcd, rrd, teacher as teacher_lib
  from tfkd.evaluation import Evaluator

  result = {"num_users": FLAGS.num_users, "num_items": FLAGS.num_items,
            "chunk_size": FLAGS.chunk_size, "top_k": FLAGS.top_k,
            "interactions_per_user": FLAGS.interactions_per_user,
            "dense_matrix_mib": round(FLAGS.num_users * FLAGS.num_items * 4 / 2**20, 1),
            "phases": {}}
  state = {}
  k = FLAGS.top_k

  def phase(name, fn):
    if name not in FLAGS.phases:
      return
    start_rss = _status("VmRSS")
    _reset_peak()
    t = time.time()
    fn()
    result["phases"][name] = {"start_mib": round(start_rss, 1),
                              "peak_mib": round(_status("VmHWM"), 1),
                              "seconds": round(time.time() - t, 2)}

  def data():
    state["dataset"] = load_dataset(
        "synthetic", num_candidates=0, split="random", use_cache=False,
        synthetic_params=dict(num_users=FLAGS.num_users, num_items=FLAGS.num_items,
                              interactions_per_user=FLAGS.interactions_per_user))
    d = state["dataset"]
    state["teacher"] = models.build_for("bpr", d, dim=200)
    state["student"] = models.build_for("bpr", d, dim=20)
    for model in (state["teacher"], state["student"]):
      model.build_for_dataset()

  def knowledge():
    d = state["dataset"]
    state["knowledge"] = {
        "user_topk": teacher_lib.user_topk(state["teacher"], d, 2 * k, FLAGS.chunk_size),
        "item_topk": teacher_lib.item_topk(state["teacher"], d, 2 * k, FLAGS.chunk_size)}

  def evaluate():
    Evaluator(state["dataset"], "test", "full", (10, 50), FLAGS.chunk_size).evaluate(
        state["student"])

  def dcd_setup():
    # cache_bytes=0: the chunked path. By default (--dcd_cache_mb) the union refresh keeps the
    # teacher's rank of every entry of each side between refreshes, dense by design.
    config = dcd.DCDConfig(rrd=rrd.RRDConfig(top=2 * k, num_interesting=k // 2,
                                             num_uninteresting=k // 2), top=2 * k,
                           item_top=2 * k, num_under=k // 2, num_over=k // 2,
                           item_num_under=k // 2, item_num_over=k // 2,
                           chunk_size=FLAGS.chunk_size, cache_bytes=0)
    state["dcd"] = dcd.DCD(config)
    state["dcd"].setup(state["dataset"], state["student"], state["teacher"], state["knowledge"])

  def cd_setup():
    # cache_bytes=0: the chunked path. The default cache (--cd_cache_mb) keeps the teacher's rows
    # between draws, a dense users x items float32 matrix by design, bounded by that flag.
    state["cd"] = cd.CD(cd.CDConfig(guide="student", sample_size=k, chunk_size=FLAGS.chunk_size,
                                    cache_bytes=0))
    state["cd"].setup(state["dataset"], state["student"], state["teacher"], state["knowledge"])

  for name, fn in (("data", data), ("knowledge", knowledge), ("evaluate", evaluate),
                   ("dcd_setup", dcd_setup), ("dcd_refresh", lambda: state["dcd"].refresh(0)),
                   ("cd_setup", cd_setup), ("cd_refresh", lambda: state["cd"].refresh(0))):
    phase(name, fn)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
