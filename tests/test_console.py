"""What a user sees: no TensorFlow start-up lines or Keras warnings, a plan, progress lines,
TensorBoard scalars of DCD's refreshes, and the main job's data step from nothing."""

import glob
import json
import os
import subprocess
import sys

import numpy as np

from conftest import REPO, SHARED_DATA, publish_derrd, shared_file, teacher_flagfile
from tfkd import console


def _env(tmp_path, **extra):
  env = dict(os.environ, TFKD_CACHE_DIR=str(tmp_path / "cache"), **extra)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs it: the entry point's default
  return env


def test_start_up_lines_are_recognised_and_others_kept():
  noise = [
      "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
      "I0000 00:00:1796659182.212363    3793 port.cc:153] oneDNN custom operations are on.",
      "I0000 00:00:1796659182.212549    3793 cudart_stub.cc:31] Could not find cuda drivers",
      "I0000 00:00:1796659182.247067    3793 cpu_feature_guard.cc:227] This TensorFlow binary",
      "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
      "with the appropriate compiler flags.",
      "E0000 00:00:1796659184.127609    3793 cuda_platform.cc:52] failed call to cuInit: ...",
  ]
  kept = ["W0000 00:00:1796659184.1 3793 op_kernel.cc:1857] OP_REQUIRES failed",
          "tfkd: error: something", "I1207 15:59:44.143088 1403 training.py:220] synthetic"]
  assert all(console.is_start_up_line(line) for line in noise)
  assert not any(console.is_start_up_line(line) for line in kept)


def test_a_run_prints_a_plan_progress_and_no_start_up_noise(tmp_path):
  r = subprocess.run(
      [sys.executable, "-m", "trainers.train", "--dataset=synthetic", "--num_candidates=20",
       "--epochs=2", "--eval_every=1", "--batch_size=64", f"--workdir={tmp_path}/w"],
      cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  out, err = r.stdout, r.stderr
  for marker in ("absl::InitializeLog", "port.cc", "cudart_stub", "cpu_feature_guard", "cuInit",
                 "UserWarning", "ran out of data"):
    assert marker not in out + err, marker
  assert out.startswith("plan:\n  data      synthetic (generated)\n  train     bpr")
  # Not a terminal: Keras's one line per epoch (3,600 training pairs / 64 = 57 steps).
  assert [line.split(" - ")[0] for line in out.splitlines() if "/57 - " in line] == ["57/57"] * 2
  assert len([line for line in err.splitlines() if ": valid H@10=" in line]) == 2
  assert "epoch 1 took" in err


def test_dcd_refreshes_are_tensorboard_scalars(tmp_path):
  import tensorflow as tf
  from absl.testing import flagsaver
  from trainers import distill

  with flagsaver.flagsaver(
      dataset="synthetic", num_candidates=40, epochs=2, eval_every=1, batch_size=256, dim=4,
      method="dcd", rrd_top=30, rrd_k=5, rrd_l=5, dcd_top=30, dcd_item_top=20, dcd_num_under=4,
      dcd_num_over=4, dcd_item_num_under=4, dcd_item_num_over=4, refresh_every=1,
      dcd_user_weight=1e-3, dcd_item_weight=1e-3, workdir=str(tmp_path / "s"),
      teacher_dir=str(tmp_path / "t"), teacher_flagfile=teacher_flagfile(tmp_path)):
    distill.main(["distill"])
  scalars = {}
  for path in glob.glob(str(tmp_path / "s" / "logs" / "distill" / "*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        scalars[(v.tag, event.step)] = float(tf.make_ndarray(v.tensor))
  with open(tmp_path / "s" / "metrics.json") as f:
    refreshes = json.load(f)["refreshes"]
  assert [r["epoch"] for r in refreshes] == [0, 1]
  for r in refreshes:
    for key in ("user_discrepancy", "item_discrepancy", "refresh_seconds"):
      np.testing.assert_allclose(scalars[(f"dcd/{key}", r["epoch"])], r[key], rtol=1e-6)


def test_the_main_job_prepares_its_data_from_nothing(tmp_path, mirror):
  """configs/dcd.flags with an empty cache and no data directory: the data step downloads the
  DE-RRD split from the catalog's URLs (served on loopback), and the data equal the local copy."""
  shared_file("citeulike/derrd_pickles/train_mat_0")
  publish_derrd(mirror[0])
  env = _env(tmp_path, TFKD_DATA_MIRROR=mirror[1])
  env.pop("TFKD_DATA_DIR", None)
  r = subprocess.run(
      [sys.executable, "-m", "trainers.distill", "--flagfile=configs/dcd.flags", "--dry_run",
       f"--teacher_dir={tmp_path}/teacher", f"--workdir={tmp_path}/dcd"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "citeulike-derrd: download 3 source file(s)" in r.stdout
  assert "  teacher   train bpr (dim 200" in r.stdout
  assert r.stdout.strip().endswith("dry run: data prepared, nothing trained")
  for name in ("train", "valid", "test"):
    rel = f"citeulike/derrd_loo/{name}.tsv"
    with open(tmp_path / "cache" / "data" / rel, "rb") as a, open(os.path.join(SHARED_DATA, rel),
                                                                   "rb") as b:
      assert a.read() == b.read()
  assert not os.path.exists(tmp_path / "dcd") and not os.path.exists(tmp_path / "teacher")
