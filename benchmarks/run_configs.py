"""Runs trainer configs over several seeds and prints a Markdown results table.

  python benchmarks/run_configs.py --configs=configs/bpr_teacher.flags,configs/bpr_student.flags \
      --seeds=0 --root=workdirs/bench

Each (config, seed) runs `python -m <trainer> --flagfile=<config> --seed=<seed>
--workdir=<root>/<config>/seed<seed>` as a subprocess; a run whose metrics.json exists is reused.
The trainer is trainers.distill for a config that names a distillation method (`--method`, in the
file, a flagfile it includes or `--extra`) and trainers.train for any other (teachers, plain
students), so one command can run a student beside its distilled variants; `--trainer` forces one.
The table shows test metrics as mean +- std over seeds, the final rank discrepancy of distilled
students (user / item side, mean over seeds), the epochs run, and the wall time. `--compare=a:b`
(config base names) adds a paired t-test over seeds of a against b on each metric (the seeds both
have); the test values of the first metric are printed per seed. `--report_only` runs nothing:
the table and tests cover the finished seeds only (to report a set of runs still under way, or
stopped).

  python benchmarks/run_configs.py \
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
flags.DEFINE_string("trainer", "auto", "Trainer module; 'auto': trainers.distill for a config "
                    "that names a distillation method (--method, itself or through a --flagfile "
                    "it or --extra includes), trainers.train for any other.")
flags.DEFINE_list("metrics", ["H@5", "M@5", "H@10", "M@10"], "Columns of the table.")
flags.DEFINE_list("extra", [], "Extra flags passed to every run (e.g. --data_dir=...).")
flags.DEFINE_list("compare", [], "Pairs a:b of config base names: paired t-test of a vs b.")
flags.DEFINE_bool("report_only", False, "Run nothing; report the seeds whose runs finished.")
FLAGS = flags.FLAGS


def trainer_for(config, extra=()):
  """The trainer module that runs `config`: --trainer, or for 'auto' the one its method implies.
  absl expands the flagfiles (nested includes, comments) as the trainer itself will read them."""
  if FLAGS.trainer != "auto":
    return FLAGS.trainer
  args = flags.FlagValues().read_flags_from_files([f"--flagfile={config}", *extra],
                                                  force_gnu=True)
  distills = any(arg.startswith("--method=") for arg in args)
  return "trainers.distill" if distills else "trainers.train"


def run_one(config, seed):
  """The metrics of (config, seed), run first unless it finished before; None when it has not
  finished and --report_only is set."""
  name = os.path.splitext(os.path.basename(config))[0]
  workdir = os.path.join(FLAGS.root, name, f"seed{seed}")
  metrics_path = os.path.join(workdir, "metrics.json")
  if not os.path.isfile(metrics_path):
    if FLAGS.report_only:
      return None
    cmd = [sys.executable, "-m", trainer_for(config, FLAGS.extra), f"--flagfile={config}",
           f"--seed={seed}", f"--workdir={workdir}", *FLAGS.extra]
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
    by_seed = {int(s): run_one(config, int(s)) for s in FLAGS.seeds}
    by_seed = {s: r for s, r in by_seed.items() if r is not None}
    results[_name(config)] = by_seed
    runs = list(by_seed.values())
    if not runs:
      rows.append(f"| `{config}` | 0 |" + " - |" * (len(FLAGS.metrics) + 4))
      continue
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
    seeds = ",".join(str(seed) for seed in by_seed)
    rows.append(f"| `{config}` | {len(runs)} ({seeds}) | " + " | ".join(cells) +
                f" | {gap} | {epochs} | {spe:.2f} | {wall:.0f} |")
  header = ("| config | seeds | " + " | ".join(f"test {m}" for m in FLAGS.metrics) +
            " | rank gap user / item | epochs | s/epoch | wall s (mean) |")
  print(header)
  print("|" + "---|" * (len(FLAGS.metrics) + 6))
  print("\n".join(rows))
  print(f"\nper seed, test {FLAGS.metrics[0]}:")
  for name, by_seed in results.items():
    print(f"- {name}: " + ", ".join(f"{by_seed[s]['test'][FLAGS.metrics[0]]:.4f} ({s})"
                                    for s in sorted(by_seed)))
  for pair in FLAGS.compare:
    a, b = pair.split(":")
    common = sorted(set(results[a]) & set(results[b]))
    print(f"\npaired t-test over seeds {','.join(map(str, common))}, {a} vs {b}:")
    if len(common) < 2:
      print("- fewer than two seeds in common: no test")
      continue
    for m in FLAGS.metrics:
      diff, t, p = paired_ttest([results[a][s]["test"][m] for s in common],
                                [results[b][s]["test"][m] for s in common])
      print(f"- test {m}: mean difference {diff:+.4f}, t = {t:.2f}, p = {p:.2g}")


if __name__ == "__main__":
  app.run(main)
