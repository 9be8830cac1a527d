"""Smoke and bad-input tests of `python -m trainers.distill`."""

import json
import os
import subprocess
import sys

from absl.testing import flagsaver

from conftest import REPO, subprocess_env, teacher_flagfile
from trainers import distill

TINY = dict(dataset="synthetic", num_candidates=40, epochs=2, eval_every=1, batch_size=256,
            dim=4, method="rrd", rrd_top=30, rrd_k=5, rrd_l=5)


def test_runs_end_to_end_from_nothing(tmp_path):
  # As a user runs it: a subprocess that exits 0 (absl exits with main's return value).
  workdir, teacher_dir = str(tmp_path / "student"), str(tmp_path / "teacher")
  flags_ = dict(workdir=workdir, teacher_dir=teacher_dir, ir_rrd_weight=1e-3,
                teacher_flagfile=teacher_flagfile(tmp_path), **TINY)
  env = subprocess_env(tmp_path)
  r = subprocess.run([sys.executable, "-m", "trainers.distill",
                      *(f"--{k}={v}" for k, v in flags_.items())],
                     cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.splitlines()[-2].startswith("test: H@10=")
  for name in ("model.json", "model.weights.h5"):
    assert os.path.isfile(os.path.join(teacher_dir, name))
  assert any(n.startswith("rankings-") for n in os.listdir(teacher_dir))
  with open(os.path.join(workdir, "metrics.json")) as f:
    metrics = json.load(f)
  assert {"H@5", "M@5", "H@10", "M@10", "NDCG@10"} <= set(metrics["test"])
  assert set(metrics["discrepancy"]) == {"user", "item"}
  assert all(v >= 0 for v in metrics["discrepancy"].values())
  with open(os.path.join(teacher_dir, "model.json")) as f:
    assert json.load(f)["config"]["dim"] == 16
  with open(os.path.join(workdir, "model.json")) as f:
    assert json.load(f)["config"]["dim"] == 4


def test_teacher_of_another_dataset_is_refused_in_one_line(tmp_path):
  teacher_dir = str(tmp_path / "teacher")
  with flagsaver.flagsaver(workdir=str(tmp_path / "s1"), teacher_dir=teacher_dir,
                           teacher_flagfile=teacher_flagfile(tmp_path), **TINY):
    distill.main(["distill"])
  env = subprocess_env(tmp_path)
  r = subprocess.run(
      [sys.executable, "-m", "trainers.distill", "--dataset=synthetic", "--num_candidates=10",
       "--split_seed=5", "--method=rrd", f"--teacher_dir={teacher_dir}",
       f"--workdir={tmp_path}/s2"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 1
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("tfkd: error: ") and "model trained on synthetic" in last
  assert not os.path.exists(os.path.join(tmp_path, "s2", "metrics.json"))


def test_deterministic_runs_are_identical(tmp_path):
  """--deterministic: two DCD runs from nothing (teacher included) with one seed end equal."""
  import numpy as np
  from tfkd import training
  from tfkd.data import load_dataset

  env = subprocess_env(tmp_path)
  flags_ = dict(TINY, method="dcd", dcd_top=30, dcd_item_top=20, dcd_num_under=4, dcd_num_over=4,
                dcd_item_num_under=4, dcd_item_num_over=4, refresh_every=1, seed=3,
                teacher_flagfile=teacher_flagfile(tmp_path))
  runs = []
  for k in range(2):
    workdir = str(tmp_path / f"student{k}")
    r = subprocess.run([sys.executable, "-m", "trainers.distill", "--deterministic",
                        f"--workdir={workdir}", f"--teacher_dir={tmp_path}/teacher{k}",
                        *(f"--{name}={value}" for name, value in flags_.items())],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(os.path.join(workdir, "metrics.json")) as f:
      runs.append((json.load(f), workdir))
  (a, dir_a), (b, dir_b) = runs
  assert a["test"] == b["test"] and a["discrepancy"] == b["discrepancy"]
  d = load_dataset("synthetic", num_candidates=40)
  wa = training.load_model(dir_a, d)[0].get_weights()
  wb = training.load_model(dir_b, d)[0].get_weights()
  assert all(np.array_equal(x, y) for x, y in zip(wa, wb))


def test_missing_method_is_refused_in_one_line(tmp_path, capsys):
  """A flagfile that names no method (a student or dataset config alone) must not run a default."""
  flags_ = {k: v for k, v in TINY.items() if k != "method"}
  capsys.readouterr()
  with flagsaver.flagsaver(workdir=str(tmp_path / "out"), teacher_dir=str(tmp_path / "t"),
                           method=None, **flags_):
    try:
      distill.main(["distill"])
    except SystemExit as e:
      assert e.code == 1
    else:
      raise AssertionError("trainers.distill ran without --method")
  last = capsys.readouterr().err.strip().splitlines()[-1]
  assert last.startswith("tfkd: error: --method: no distillation method given; expected one "
                         f"of {', '.join(sorted(distill.distill.METHODS))}"), last
  assert not os.path.exists(tmp_path / "out") and not os.path.exists(tmp_path / "t")
