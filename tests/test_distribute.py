"""Training under tf.distribute: one device against two logical CPUs (MirroredStrategy) give the
same results, within a stated tolerance; multi_worker is refused in one line."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, teacher_flagfile

COMMON = ["--dataset=synthetic", "--num_candidates=40", "--batch_size=256", "--dim=4",
          "--eval_every=1", "--deterministic", "--seed=3"]
DCD = ["--method=dcd", "--refresh_every=2", "--rrd_top=30", "--rrd_k=5", "--rrd_l=5",
       "--dcd_top=30", "--dcd_item_top=20", "--dcd_num_under=4", "--dcd_num_over=4",
       "--dcd_item_num_under=4", "--dcd_item_num_over=4", "--ir_rrd_weight=1e-3"]
# Tolerances on test metrics (fractions of 200 users). Plain training splits each batch's mean
# exactly (per-replica losses / 2, summed): only float summation order differs. RRD / DCD average
# their list losses over each replica's distinct users (not the global batch's), and rank-based
# sampling turns tiny float differences into other samples: a looser bound.
TOLERANCE = {"trainers.train": 1e-6, "trainers.distill": 0.03}


def run(args, env):
  r = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("trainer,extra", [("trainers.train", ["--model=bpr", "--epochs=6"]),
                                           ("trainers.distill", [*DCD, "--epochs=6"])])
def test_two_cpu_replicas_match_one_device(tmp_path, trainer, extra):
  env = dict(os.environ, TFKD_CACHE_DIR=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="3")
  args = ["-m", trainer, *COMMON, *extra]
  if trainer == "trainers.distill":
    args += [f"--teacher_dir={tmp_path}/teacher",
             f"--teacher_flagfile={teacher_flagfile(tmp_path)}"]
  run([*args, f"--workdir={tmp_path}/one"], env)
  run([*args, "--strategy=mirrored", "--logical_cpus=2", f"--workdir={tmp_path}/two"], env)
  metrics = []
  for name in ("one", "two"):
    with open(tmp_path / name / "metrics.json") as f:
      metrics.append(json.load(f))
  one, two = metrics
  assert one["epochs_run"] == two["epochs_run"] == 6
  for key in ("H@5", "H@10", "NDCG@10"):
    assert abs(one["test"][key] - two["test"][key]) <= TOLERANCE[trainer], key
  if trainer == "trainers.distill":
    for side in ("user", "item"):
      assert two["discrepancy"][side] == pytest.approx(one["discrepancy"][side], rel=0.05)


def test_multi_worker_is_refused_in_one_line(tmp_path):
  env = dict(os.environ, TFKD_CACHE_DIR=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="3")
  r = subprocess.run([sys.executable, "-m", "trainers.train", *COMMON, "--epochs=1",
                      "--strategy=multi_worker", f"--workdir={tmp_path}/w"], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 1
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("tfkd: error: --strategy=multi_worker is not supported")
