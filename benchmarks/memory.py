"""Peak memory of the whole-catalog passes (teacher rankings, evaluation, DCD and CD-SG refreshes)
on a synthetic catalog of any size: they work in chunks of rows, so memory grows with
chunk x catalog, not users x items.

  python benchmarks/memory.py --num_users=30000 --num_items=40000

Prints one JSON object: per phase, the process's resident memory when the phase starts and its
peak during the phase (MiB; Linux: VmHWM, reset between phases through /proc/self/clear_refs),
the phase's seconds, and the size of the dense users x items float32 matrix the chunking avoids.
Phases: `data` (generate, prepare, split), `knowledge` (teacher's top-K both sides), `evaluate`
(full-ranking test evaluation), `dcd_refresh` (both sides' correction lists, union candidates),
`cd_refresh` (CD-SG: the student's full ranking of every user, rank-aware draws, teacher logits).
Models are BPR with random weights (teacher dim 200, student dim 20): costs do not depend on the
weights' values. tests/test_memory.py runs this at two sizes and checks the growth.
"""

import json
import time

from absl import app, flags

flags.DEFINE_integer("num_users", 30000, "Users of the synthetic catalog.")
flags.DEFINE_integer("num_items", 40000, "Items of the synthetic catalog.")
flags.DEFINE_integer("interactions_per_user", 20, "Interactions per user.")
flags.DEFINE_integer("chunk_size", 1024, "Rows per chunk of every whole-catalog pass.")
flags.DEFINE_integer("top_k", 50, "Teacher list length (RRD's and DCD's top lists use it).")
flags.DEFINE_list("phases", ["data", "knowledge", "evaluate", "dcd_refresh", "cd_refresh"],
                  "Phases to run, in order (each needs the ones before it: data, knowledge).")
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
            "chunk_size": FLAGS.chunk_size,
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

  def dcd_refresh():
    config = dcd.DCDConfig(rrd=rrd.RRDConfig(top=2 * k, num_interesting=k // 2,
                                             num_uninteresting=k // 2), top=2 * k,
                           item_top=2 * k, num_under=k // 2, num_over=k // 2,
                           item_num_under=k // 2, item_num_over=k // 2,
                           chunk_size=FLAGS.chunk_size)
    method = dcd.DCD(config)
    method.setup(state["dataset"], state["student"], state["teacher"], state["knowledge"])
    method.refresh(0)

  def cd_refresh():
    method = cd.CD(cd.CDConfig(guide="student", sample_size=k, chunk_size=FLAGS.chunk_size))
    method.setup(state["dataset"], state["student"], state["teacher"], state["knowledge"])
    method.refresh(0)

  for name, fn in (("data", data), ("knowledge", knowledge), ("evaluate", evaluate),
                   ("dcd_refresh", dcd_refresh), ("cd_refresh", cd_refresh)):
    phase(name, fn)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
