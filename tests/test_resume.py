"""Resume after a crash: a run killed with SIGKILL and started again with the same command ends
with the same weights and metrics as an uninterrupted run; bad checkpoints are refused."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, read_metrics, subprocess_env, trainer_args
from tfkd import resume

COMMON = ["--dataset=synthetic", "--num_candidates=40", "--batch_size=256", "--dim=4",
          "--eval_every=1", "--patience=100", "--deterministic", "--seed=3"]


def run(args, env, wait=True):
  cmd = [sys.executable, *args]
  if wait:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)


def checkpoint_epoch(workdir):
  try:
    with np.load(os.path.join(workdir, resume.FILE)) as z:
      return json.loads(str(z["meta"]))["state"]["epoch"]
  except (OSError, ValueError, KeyError):
    return 0


def kill_after(proc, workdir, epoch, timeout=300):
  """SIGKILLs `proc` once its checkpoint has reached `epoch`; returns that epoch."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    reached = checkpoint_epoch(workdir)
    if reached >= epoch:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return reached
    time.sleep(0.02)
  raise AssertionError(f"the run ended (code {proc.poll()}) before its epoch-{epoch} checkpoint")


def weights(workdir):
  import h5py
  out = {}
  with h5py.File(os.path.join(workdir, "model.weights.h5")) as f:
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape")
                 else None)
  return out


@pytest.mark.parametrize("trainer,extra", [
    ("trainers.train", ["--model=cdae", "--epochs=16"]),
    ("trainers.distill", ["--method=dcd", "--epochs=16", "--refresh_every=3", "--rrd_top=30",
                          "--rrd_k=5", "--rrd_l=5", "--dcd_top=30", "--dcd_item_top=20",
                          "--dcd_num_under=4", "--dcd_num_over=4", "--dcd_item_num_under=4",
                          "--dcd_item_num_over=4", "--ir_rrd_weight=1e-3"]),
])
def test_killed_run_resumes_to_the_same_result(tmp_path, trainer, extra):
  env = subprocess_env(tmp_path)
  args = trainer_args(tmp_path, trainer, [*COMMON, *extra])
  whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
  r = run([*args, f"--workdir={whole}"], env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert not os.path.exists(os.path.join(whole, resume.FILE))  # removed once done

  proc = run([*args, f"--workdir={broken}"], env, wait=False)
  killed_at = kill_after(proc, broken, epoch=5)
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(broken, "metrics.json"))
  r = run([*args, f"--workdir={broken}"], env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"resuming {broken} after epoch {killed_at}" in r.stderr

  a, b = read_metrics(whole), read_metrics(broken)
  assert a["test"] == b["test"] and a["valid"] == b["valid"]
  assert (a["best_epoch"], a["epochs_run"]) == (b["best_epoch"], b["epochs_run"])
  if trainer == "trainers.distill":
    assert a["refreshes"] and [r["epoch"] for r in a["refreshes"]] == \
        [r["epoch"] for r in b["refreshes"]]
  wa, wb = weights(whole), weights(broken)
  assert wa.keys() == wb.keys()
  for name in wa:
    np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


def test_checkpoint_of_another_configuration_or_corrupt_is_refused(tmp_path):
  env = subprocess_env(tmp_path)
  workdir = str(tmp_path / "w")
  proc = run(["-m", "trainers.train", *COMMON, "--epochs=60", f"--workdir={workdir}"], env,
             wait=False)
  kill_after(proc, workdir, epoch=2)
  r = run(["-m", "trainers.train", *COMMON, "--epochs=60", "--learning_rate=0.05",
           f"--workdir={workdir}"], env)
  assert r.returncode == 1
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("tfkd: error: ") and "checkpoint of another configuration" in last
  assert "learning_rate" in last
  with open(os.path.join(workdir, resume.FILE), "r+b") as f:
    f.truncate(100)
  r = run(["-m", "trainers.train", *COMMON, "--epochs=60", f"--workdir={workdir}"], env)
  assert r.returncode == 1
  last = r.stderr.strip().splitlines()[-1]
  assert "corrupt checkpoint" in last and resume.FILE in last
  assert not os.path.exists(os.path.join(workdir, "metrics.json"))


def test_diverging_run_stops_with_one_line_and_writes_no_results(tmp_path):
  env = subprocess_env(tmp_path)
  workdir = str(tmp_path / "w")
  r = run(["-m", "trainers.train", *COMMON, "--epochs=5", "--learning_rate=1e30",
           "--l2=0", f"--workdir={workdir}"], env)
  assert r.returncode == 1
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("tfkd: error: training diverged") and "--learning_rate" in last
  assert not os.path.exists(os.path.join(workdir, "metrics.json"))
  assert not os.path.exists(os.path.join(workdir, resume.FILE))
