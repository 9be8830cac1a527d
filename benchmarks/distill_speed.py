"""Epoch time of plain, RRD and DCD student training on CiteULike, split into steps and refresh.

  python benchmarks/distill_speed.py --data_dir=../shared/data

Each method runs in its own process (so peak memory is its own). An epoch is timed as the
training steps (one Keras `fit` over all epochs, each epoch timed by a callback that runs before
the refresh) plus, for DCD, the refresh of the correction lists (which runs every
`--refresh_every` epochs; its cost per epoch is the median refresh after the warm-up epoch's
divided by that; the first, which for union candidates also builds the teacher's kept ranks
(`--dcd_cache_mb`), is reported apart). The teacher is a dim-200 BPR with random weights
unless `--teacher_dir` names a trained one: sampling and ranking costs do not depend on the
weights' values. Prints a Markdown table with medians over `--epochs` epochs and the peak
resident memory of each process.

This VM's speed drifts by tens of percent from one process to the next, so one process per
method proves little: `--repeats=R` runs every (method, `--jit_compile` setting) R times,
interleaved (`--jit_compile=both` times each method plainly and XLA-compiled), and each row gives
the median of the R processes' medians with their range.

DCD's refresh options (`--dcd_refresh_backend`, `--dcd_draws`, `--dcd_background`, any DCD flag of
`trainers.distill`) are timed as variants: each `--dcd_extra` is one, a comma-separated list of
DCD flags applied after the script's own (an empty value: the defaults), interleaved with the
others, e.g. to time the refresh before against after:

  python benchmarks/distill_speed.py --data_dir=../shared/data --methods=dcd \
      --dcd_candidates=union --refresh_every=1 --epochs=3 \
      --dcd_extra= --dcd_extra=--dcd_draws=numpy,--dcd_background

The refresh columns give the seconds the refresh holds the training thread (for a background
refresh: taking the scores at its epoch's start and waiting for the worker at its end; the whole
epoch, waits included, is timed) and, for a background refresh, the worker thread's seconds.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_string("data_dir", None, "Directory holding citeulike/derrd_loo.")
flags.DEFINE_string("teacher_dir", None, "A trained teacher (default: random dim-200 BPR).")
flags.DEFINE_integer("epochs", 5, "Timed epochs per method (after one warm-up epoch).")
flags.DEFINE_integer("refresh_every", 5, "DCD refresh period in epochs.")
flags.DEFINE_list("methods", ["student", "rrd", "dcd_user", "dcd"], "What to time.")
flags.DEFINE_enum("dcd_candidates", "teacher_top", ["teacher_top", "union", "all"],
                  "DCD's candidate entries (the README's table: teacher_top).")
flags.DEFINE_integer("dcd_cache_mb", 1024, "DCD, union: MiB per side for the teacher's kept "
                     "ranks (0: re-score and re-sort the teacher at every refresh).",
                     lower_bound=0)
flags.DEFINE_integer("chunk_size", 1024, "DCD: rows per chunk of a refresh (trainers.distill's "
                     "--knowledge_chunk_size).", lower_bound=1)
flags.DEFINE_enum("jit_compile", "false", ["false", "true", "both"],
                  "Compile the training step with XLA (both: time each method both ways).")
flags.DEFINE_integer("repeats", 1, "Processes per (method, jit setting), interleaved.",
                     lower_bound=1)
flags.DEFINE_list("list_pairs", ["0"], "RRD / DCD: trainers.distill's --list_pairs (lists of "
                  "the batch's first N pairs' users and items; 0: all); several values are "
                  "timed interleaved.")
flags.DEFINE_multi_string("dcd_extra", [""], "DCD: comma-separated DCD flags of one variant "
                          "(e.g. --dcd_draws=numpy,--dcd_background); repeat to time several, "
                          "interleaved; empty: the defaults.")
flags.DEFINE_string("one", None, "Internal: time one method in this process, print JSON.")
FLAGS = flags.FLAGS


def time_one(method):
  import keras

  from tfkd import models, optimizers, training
  from tfkd.data import load_dataset
  from tfkd.distill import Distiller, RRDConfig, dcd, rrd, teacher as teacher_lib

  pairs = int(FLAGS.list_pairs[0])
  dataset = load_dataset("citeulike-derrd", data_dir=FLAGS.data_dir)
  keras.utils.set_random_seed(0)
  if FLAGS.teacher_dir:
    teacher, _ = training.load_model(FLAGS.teacher_dir, dataset)
  else:
    teacher = models.build("bpr", dataset.num_users, dataset.num_items, dim=200)
  student = models.build("bpr", dataset.num_users, dataset.num_items, dim=20, l2=1e-2)
  data = student.make_train_dataset(dataset, 1024, seed=0)
  callbacks = []
  start = time.time()
  if method == "student":
    fit_model, m = student, None
  else:
    if method == "rrd":
      m = rrd.RRD(RRDConfig(list_pairs=pairs))
    else:
      m = dcd.DCD(dcd_config(method, pairs, FLAGS.dcd_extra[0]))
    knowledge = {"user_topk": teacher_lib.user_topk(teacher, dataset, m.user_k),
                 "item_topk": teacher_lib.item_topk(teacher, dataset, m.item_k)
                 if m.item_k else None}
    m.setup(dataset, student, teacher, knowledge)
    fit_model = Distiller(student, teacher, m)
    fit_model.declare_parts()
    # The Distiller's own callback objects: `fit` adds those it is not given, so fresh ones from
    # `m.callbacks()` would run every refresh (and RRD redraw) twice.
    callbacks = list(fit_model.method_callbacks)
  setup_seconds = time.time() - start
  fit_model.compile(optimizer=optimizers.get("adam", 1e-3),  # what the trainers run
                    steps_per_execution=32, jit_compile=FLAGS.jit_compile == "true")

  times, start = [], []
  # Wall time of every epoch, from before the method's callbacks at its start to after them at
  # its end (where a background refresh is waited for).
  begin = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: start.append(
      time.perf_counter()))
  end = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: times.append(
      time.perf_counter() - start[-1]))
  # One warm-up epoch (tracing), then the timed ones, in one fit as in real training.
  fit_model.fit(data, epochs=1 + FLAGS.epochs, verbose=0, shuffle=False,
                callbacks=[begin, *callbacks, end])
  # An epoch's time includes the RRD redraw and, at a DCD refresh epoch, the refresh's time on
  # the training thread, which is subtracted from its epoch.
  records = getattr(m, "refreshes", [])
  refreshed = {r["epoch"]: r["refresh_seconds"] for r in records}
  worker = [r["background_seconds"] for r in records if "background_seconds" in r]
  steps = [t - refreshed.get(e, 0.0) for e, t in enumerate(times)][1:]
  # The warm-up epoch's refresh is the first: with union candidates it also builds the teacher's
  # kept ranks, a one-off reported apart; the median is over the later refreshes.
  first = refreshed.get(0, 0.0)
  refreshes = [t for e, t in refreshed.items() if e > 0] or list(refreshed.values())
  step = statistics.median(steps)
  ref = statistics.median(refreshes) if refreshes else 0.0
  return {"method": method, "list_pairs": pairs, "steps_s": round(step, 3),
          "refresh_s": round(ref, 3),
          "worker_s": round(statistics.median(worker), 3) if worker else 0.0,
          "epoch_wall_s": round(statistics.median(times[1:]), 3),
          "epoch_s": round(step + ref / FLAGS.refresh_every, 3),
          "first_refresh_s": round(first, 3), "setup_s": round(setup_seconds, 2),
          "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main(argv):
  del argv
  if FLAGS.one:
    print("RESULT " + json.dumps(time_one(FLAGS.one)), flush=True)
    return
  settings = ["false", "true"] if FLAGS.jit_compile == "both" else [FLAGS.jit_compile]
  runs = {}
  for _ in range(FLAGS.repeats):
    for method in FLAGS.methods:
      for pairs in FLAGS.list_pairs if method != "student" else ["0"]:
        for extra in FLAGS.dcd_extra if method.startswith("dcd") else [""]:
          for jit in settings:
            runs.setdefault((method, pairs, extra, jit), []).append(
                run_one(method, pairs, jit, extra))
  print(f"| method | DCD options | list pairs | XLA | training steps s/epoch | refresh s on the "
        f"training thread (every {FLAGS.refresh_every} epochs) | background s | epoch s, "
        "refresh amortized (range) | epoch wall s | first refresh s | setup s (teacher "
        "rankings) | peak RSS GB |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for (method, pairs, extra, jit), rs in runs.items():
    med = lambda key: round(statistics.median(r[key] for r in rs), 3)
    epochs = [r["epoch_s"] for r in rs]
    spread = f" ({min(epochs)}-{max(epochs)})" if len(rs) > 1 else ""
    lists = pairs if pairs != "0" else "all"
    print(f"| {method} | {extra.replace(',', ' ') or '-'} | {lists} | "
          f"{'yes' if jit == 'true' else 'no'} | {med('steps_s')} | {med('refresh_s')} | "
          f"{med('worker_s')} | {med('epoch_s')}{spread} | {med('epoch_wall_s')} | "
          f"{med('first_refresh_s')} | {med('setup_s')} | {med('peak_rss_gb')} |")


def dcd_config(method, pairs, extra):
  """The timed DCD config as trainers.distill reads it: the script's settings, then `extra`'s
  comma-separated DCD flags (which may override them)."""
  from tfkd import distill

  fv = flags.FlagValues()
  flags.DEFINE_integer("seed", 0, "", flag_values=fv)
  flags.DEFINE_integer("knowledge_chunk_size", FLAGS.chunk_size, "", flag_values=fv)
  flags.DEFINE_integer("refresh_every", FLAGS.refresh_every, "", flag_values=fv)
  distill.define_flags(fv)
  fv(["distill_speed", f"--list_pairs={pairs}", f"--dcd_candidates={FLAGS.dcd_candidates}",
      f"--dcd_cache_mb={FLAGS.dcd_cache_mb}",
      *(["--dcd_item_weight=0"] if method == "dcd_user" else []),
      *(a for a in extra.split(",") if a)])
  return distill.config_from_flags("dcd", fv)


def run_one(method, pairs, jit, extra=""):
  args = [sys.executable, __file__, f"--one={method}", f"--epochs={FLAGS.epochs}",
          f"--list_pairs={pairs}",
          f"--refresh_every={FLAGS.refresh_every}", f"--jit_compile={jit}",
          f"--dcd_candidates={FLAGS.dcd_candidates}", f"--dcd_cache_mb={FLAGS.dcd_cache_mb}",
          f"--chunk_size={FLAGS.chunk_size}", f"--dcd_extra={extra}"]
  if FLAGS.data_dir:
    args.append(f"--data_dir={FLAGS.data_dir}")
  if FLAGS.teacher_dir:
    args.append(f"--teacher_dir={FLAGS.teacher_dir}")
  out = subprocess.run(args, capture_output=True, text=True, check=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout
  return json.loads(out.split("RESULT ", 1)[1])


if __name__ == "__main__":
  app.run(main)
