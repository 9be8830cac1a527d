"""Training under tf.distribute: one device, two logical CPUs (MirroredStrategy) and two worker
processes on 127.0.0.1 (MultiWorkerMirroredStrategy) give the same results, within a stated
tolerance."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from conftest import REPO, read_metrics, subprocess_env, trainer_args

COMMON = ["--dataset=synthetic", "--num_candidates=40", "--batch_size=256", "--dim=4",
          "--eval_every=1", "--deterministic", "--seed=3"]
DCD = ["--method=dcd", "--refresh_every=2", "--rrd_top=30", "--rrd_k=5", "--rrd_l=5",
       "--dcd_top=30", "--dcd_item_top=20", "--dcd_num_under=4", "--dcd_num_over=4",
       "--dcd_item_num_under=4", "--dcd_item_num_over=4", "--ir_rrd_weight=1e-3"]
# Tolerances on test metrics (fractions of 200 users). Plain training splits each batch's mean
# exactly (per-replica losses / 2, summed), so only float summation order differs; but Adam's
# step is g / sqrt(v), full-size even for a gradient entry that is rounding noise, so the two
# runs drift apart (weights ~2% after 6 epochs; with SGD they are identical, tested below) and a
# few users rank differently. RRD / DCD average their list losses over each replica's distinct
# users (not the global batch's), and rank-based sampling turns tiny float differences into other
# samples. Both: 6 users of 200.
TOLERANCE = {"trainers.train": 0.03, "trainers.distill": 0.03}


def run(args, env):
  r = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("trainer,extra", [("trainers.train", ["--model=bpr", "--epochs=6"]),
                                           ("trainers.distill", [*DCD, "--epochs=6"])])
def test_two_cpu_replicas_match_one_device(tmp_path, trainer, extra):
  env = subprocess_env(tmp_path)
  args = trainer_args(tmp_path, trainer, [*COMMON, *extra])
  run([*args, f"--workdir={tmp_path}/one"], env)
  run([*args, "--strategy=mirrored", "--logical_cpus=2", f"--workdir={tmp_path}/two"], env)
  one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
  assert one["epochs_run"] == two["epochs_run"] == 6
  for key in ("H@5", "H@10", "NDCG@10"):
    assert abs(one["test"][key] - two["test"][key]) <= TOLERANCE[trainer], key
  if trainer == "trainers.distill":
    for side in ("user", "item"):
      assert two["discrepancy"][side] == pytest.approx(one["discrepancy"][side], rel=0.05)


def read_weights(workdir):
  """{dataset path: array} of a work directory's model.weights.h5."""
  import h5py
  out = {}
  with h5py.File(os.path.join(workdir, "model.weights.h5"), "r") as f:
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                 if isinstance(obj, h5py.Dataset) else None)
  return out


def test_two_cpu_replicas_train_identical_weights_with_sgd(tmp_path):
  # Without Adam's noise amplification the split batch is the same computation: every weight of
  # the 2-replica run equals the 1-device run's (measured: bit-identical).
  env = subprocess_env(tmp_path)
  args = trainer_args(tmp_path, "trainers.train", [*COMMON, "--model=bpr", "--epochs=3",
                                                   "--optimizer=sgd", "--learning_rate=0.5"])
  run([*args, f"--workdir={tmp_path}/one"], env)
  run([*args, "--strategy=mirrored", "--logical_cpus=2", f"--workdir={tmp_path}/two"], env)
  one, two = read_weights(tmp_path / "one"), read_weights(tmp_path / "two")
  embeddings = [name for name, value in one.items() if value.ndim == 2]
  assert len(embeddings) == 2
  for name in embeddings:
    assert np.abs(one[name]).max() > 0
    np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-7, err_msg=name)


def free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def run_workers(args, env, workers=2, timeout=600):
  """Runs `args` as `workers` processes of one TF_CONFIG cluster on 127.0.0.1. A worker that
  fails fails the test at once with its stderr (the others would wait for it); all are killed if
  any is still running after `timeout` seconds, and the failure shows every worker's stderr."""
  cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
  logs = [tempfile.TemporaryFile("w+") for _ in range(workers)]
  procs = [subprocess.Popen(
      [sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
      text=True, env=dict(env, TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": i}})))
           for i, log in enumerate(logs)]

  def stderr_tails():
    out = []
    for i, log in enumerate(logs):
      log.seek(0)
      out.append(f"--- worker {i} (exit {procs[i].poll()}):\n{log.read()[-3000:]}")
    return "\n".join(out)

  # A hang guard like `run`'s subprocess timeout, not a speed check (a run takes ~30 s): a
  # deadlocked cluster never exits, and without it the suite would wait for CI's own limit.
  deadline = time.monotonic() + timeout
  try:
    while any(p.poll() is None for p in procs):
      failed = [p for p in procs if p.poll() not in (None, 0)]
      assert not failed, stderr_tails()
      if time.monotonic() > deadline:
        pytest.fail(f"hang guard: workers still running after {timeout} s\n{stderr_tails()}")
      time.sleep(0.5)
    assert all(p.returncode == 0 for p in procs), stderr_tails()
  finally:
    for p in procs:
      p.kill()
      p.wait()
    for log in logs:
      log.close()


@pytest.mark.parametrize("trainer,extra", [("trainers.train", ["--model=bpr", "--epochs=4"]),
                                           ("trainers.distill", [*DCD, "--epochs=4"])])
def test_two_workers_match_one_process(tmp_path, trainer, extra):
  env = subprocess_env(tmp_path)
  args = trainer_args(tmp_path, trainer, [*COMMON, *extra])
  run([*args, f"--workdir={tmp_path}/one"], env)  # (trains the teacher the workers read)
  run_workers([*args, "--strategy=multi_worker", f"--workdir={tmp_path}/two"], env)
  one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
  assert one["epochs_run"] == two["epochs_run"] == 4
  for key in ("H@5", "H@10", "NDCG@10"):
    assert abs(one["test"][key] - two["test"][key]) <= TOLERANCE[trainer], key
  # The chief wrote the outputs; the other worker's copy is gone.
  assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))


@pytest.mark.parametrize("tf_config,expected", [
    ("not json", "TF_CONFIG: expected JSON"),
    ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', "TF_CONFIG: --strategy=multi"),
])
def test_bad_tf_config_is_one_line(tmp_path, tf_config, expected):
  env = subprocess_env(tmp_path, TF_CONFIG=tf_config)
  r = subprocess.run([sys.executable, "-m", "trainers.train", *COMMON, "--epochs=1",
                      "--strategy=multi_worker", f"--workdir={tmp_path}/w"], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 1
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith(f"tfkd: error: {expected}"), last
  assert not os.path.exists(tmp_path / "w" / "metrics.json")
