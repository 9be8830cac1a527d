"""Runs trainer configs over several seeds and prints a Markdown results table.

  python benchmarks/run_configs.py --configs=configs/bpr_teacher.flags,configs/bpr_student.flags \
      --seeds=0 --root=workdirs/bench

Each (config, seed) runs `python -m trainers.train --flagfile=<config> --seed=<seed>
--workdir=<root>/<config>/seed<seed>` as a subprocess; a run whose metrics.json exists is reused.
The table shows test metrics as mean +- std over seeds, the final rank discrepancy of distilled
students (user / item side, mean over seeds), the epochs run, and the wall time. `--compare=a:b`
(config base names) adds a paired t-test over seeds of a against b on each metric.

  python benchmarks/run_configs.py --trainer=trainers.distill \
      --configs=configs/rrd.flags,configs/dcd.flags --seeds=0,1,2,3,4 --compare=dcd:rrd \
      --extra=--teacher_dir=workdirs/bpr_teacher
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

flags.DEFINE_list("configs", [], "Flagfiles to run.")
flags.DEFINE_list("seeds", ["0"], "Seeds.")
flags.DEFINE_string("root", "workdirs/bench", "Where the work directories go.")
flags.DEFINE_string("trainer", "trainers.train", "Trainer module.")
flags.DEFINE_list("metrics", ["H@5", "M@5", "H@10", "M@10"], "Columns of the table.")
flags.DEFINE_list("extra", [], "Extra flags passed to every run (e.g. --data_dir=...).")
flags.DEFINE_list("compare", [], "Pairs a:b of config base names: paired t-test of a vs b.")
FLAGS = flags.FLAGS


def run_one(config, seed):
  name = os.path.splitext(os.path.basename(config))[0]
  workdir = os.path.join(FLAGS.root, name, f"seed{seed}")
  metrics_path = os.path.join(workdir, "metrics.json")
  if not os.path.isfile(metrics_path):
    cmd = [sys.executable, "-m", FLAGS.trainer, f"--flagfile={config}", f"--seed={seed}",
           f"--workdir={workdir}", *FLAGS.extra]
    print("running:", " ".join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - start
    with open(metrics_path) as f:
      metrics = json.load(f)
    metrics["wall_seconds"] = round(wall, 1)
    with open(metrics_path + ".tmp", "w") as f:
      json.dump(metrics, f, indent=2)
    os.replace(metrics_path + ".tmp", metrics_path)
  with open(metrics_path) as f:
    return json.load(f)


def _name(config):
  return os.path.splitext(os.path.basename(config))[0]


def main(argv):
  del argv
  from tfkd.evaluation import paired_ttest
  rows, results = [], {}
  for config in FLAGS.configs:
    runs = [run_one(config, int(s)) for s in FLAGS.seeds]
    results[_name(config)] = runs
    cells = []
    for m in FLAGS.metrics:
      values = np.array([r["test"][m] for r in runs])
      cells.append(f"{values.mean():.4f} +- {values.std(ddof=1):.4f}" if len(values) > 1
                   else f"{values[0]:.4f}")
    epochs = "/".join(str(r.get("epochs_run", "?")) for r in runs)
    wall = np.mean([r.get("wall_seconds", r.get("train_seconds", 0)) for r in runs])
    spe = np.mean([r.get("seconds_per_epoch", 0) for r in runs])
    if all("discrepancy" in r for r in runs):
      gap = (f"{np.mean([r['discrepancy']['user'] for r in runs]):.0f} / "
             f"{np.mean([r['discrepancy']['item'] for r in runs]):.0f}")
    else:
      gap = "-"
    rows.append(f"| `{config}` | {len(runs)} | " + " | ".join(cells) +
                f" | {gap} | {epochs} | {spe:.2f} | {wall:.0f} |")
  header = ("| config | seeds | " + " | ".join(f"test {m}" for m in FLAGS.metrics) +
            " | rank gap user / item | epochs | s/epoch | wall s (mean) |")
  print(header)
  print("|" + "---|" * (len(FLAGS.metrics) + 6))
  print("\n".join(rows))
  for pair in FLAGS.compare:
    a, b = pair.split(":")
    print(f"\npaired t-test over seeds, {a} vs {b}:")
    for m in FLAGS.metrics:
      diff, t, p = paired_ttest([r["test"][m] for r in results[a]],
                                [r["test"][m] for r in results[b]])
      print(f"- test {m}: mean difference {diff:+.4f}, t = {t:.2f}, p = {p:.2g}")


if __name__ == "__main__":
  app.run(main)
