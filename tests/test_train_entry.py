"""Smoke and bad-input tests of `python -m trainers.train`."""

import json
import os
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from conftest import REPO, subprocess_env
from trainers import train

TINY = dict(dataset="synthetic", num_candidates=40, epochs=4, eval_every=2, dim=8,
            learning_rate=0.02, batch_size=256)


def test_main_writes_checkpoint_flags_logs_and_metrics(tmp_path):
  workdir = str(tmp_path / "w")
  with flagsaver.flagsaver(workdir=workdir, **TINY):
    train.main(["train"])
  for name in ("model.json", "model.weights.h5", "flags.txt", "metrics.json", "test_ranks.npz"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, "logs"))
  with open(os.path.join(workdir, "metrics.json")) as f:
    metrics = json.load(f)
  for split in ("valid", "test"):
    assert {"H@5", "M@5", "H@10", "M@10", "NDCG@10"} <= set(metrics[split])
    assert 0.0 <= metrics[split]["M@5"] <= metrics[split]["H@5"] <= metrics[split]["H@10"] <= 1
  assert "--dim=8" in open(os.path.join(workdir, "flags.txt")).read()
  # The reloaded checkpoint gives the same test metrics.
  from tfkd import training
  from tfkd.data import load_dataset
  d = load_dataset("synthetic", num_candidates=40)
  model, _ = training.load_model(workdir, d)
  again = training.evaluate_splits(model, d, "sampled", (5, 10), 1024)["test"].metrics
  assert again == pytest.approx(metrics["test"])


def run(args, tmp_path):
  env = subprocess_env(tmp_path)
  return subprocess.run([sys.executable, "-m", "trainers.train", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_success_exits_zero(tmp_path):
  workdir = str(tmp_path / "w")
  r = run(["--dataset=synthetic", f"--workdir={workdir}", "--epochs=1", "--dim=4",
           "--num_candidates=10"], tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.splitlines()[-1] == f"wrote {workdir}/metrics.json"


def test_bad_flags_exit_nonzero_with_one_line(tmp_path):
  r = run(["--dataset=synthetic", f"--workdir={tmp_path}/w", "--batch_size=0"], tmp_path)
  assert r.returncode != 0 and "batch_size" in r.stderr
  r = run(["--dataset=synthetic", f"--workdir={tmp_path}/w", "--no_such_flag=1"], tmp_path)
  assert r.returncode != 0 and "no_such_flag" in r.stderr


def test_unwritable_workdir_is_one_line(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  r = run(["--dataset=synthetic", f"--workdir={blocker}/w", "--num_candidates=10"], tmp_path)
  assert r.returncode == 1
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("tfkd: error: workdir") and "not writable" in last


def test_teacher_from_another_dataset_is_refused(tmp_path):
  from tfkd import training
  from tfkd.data import load_dataset
  from tfkd.errors import ConfigError
  workdir = str(tmp_path / "w")
  with flagsaver.flagsaver(workdir=workdir, **TINY):
    train.main(["train"])
  other = load_dataset("synthetic", num_candidates=40,
                       synthetic_params=dict(num_users=50, num_items=200))
  with pytest.raises(ConfigError, match="model trained on synthetic \\(200 users x \\d+ items.*but the dataset is synthetic \\(50 users"):
    training.load_model(workdir, other)


def test_own_delimited_file_with_header_and_recipe(tmp_path):
  import numpy as np
  rng = np.random.default_rng(0)
  lines = ["item;rating;user"]
  for u in range(40):
    for i in rng.choice(60, 12, replace=False):
      lines.append(f"it{i};{rng.integers(1, 6)};user{u}")
  data = tmp_path / "ratings.csv"
  data.write_text("\n".join(lines) + "\n")
  workdir = str(tmp_path / "w")
  with flagsaver.flagsaver(workdir=workdir, dataset="file", data_file=str(data), data_sep=";",
                           data_header=True, min_rating=2.0, num_candidates=5, epochs=2,
                           eval_every=1, dim=4, eval_protocol="full"):
    train.main(["train"])
  with open(os.path.join(workdir, "metrics.json")) as f:
    assert json.load(f)["dataset"] == "file"


def test_bad_row_in_own_file_is_one_line(tmp_path):
  data = tmp_path / "r.csv"
  data.write_text("u1,i1,5,10\nu1,i2,5\n")
  r = run(["--dataset=file", f"--data_file={data}", f"--workdir={tmp_path}/w"], tmp_path)
  assert r.returncode == 1
  assert r.stderr.strip().splitlines()[-1] == (
      f"tfkd: error: {data}:2: expected 4 fields (user, item, rating, timestamp), got 3")


def test_model_flags_reach_only_models_that_take_them():
  from absl import flags

  from tfkd.errors import TfkdError
  from trainers import common

  def config(*args):
    fv = flags.FlagValues()
    common.define_common_flags(fv)
    common.define_model_flags(fv)
    fv(["t", "--workdir=w", *args])
    return common.model_config(fv)

  assert config("--model=bpr", "--dim=8") == dict(dim=8, l2=0.0, num_negatives=1)
  assert config("--model=neumf", "--hidden=8,4", "--loss=bpr", "--num_negatives=4") == dict(
      dim=20, l2=0.0, num_negatives=4, hidden=[8, 4], loss="bpr")
  with pytest.raises(TfkdError, match="--hidden does not apply to --model=bpr"):
    config("--model=bpr", "--hidden=8")
  with pytest.raises(TfkdError, match="--loss does not apply"):
    config("--loss=bce")
  with pytest.raises(TfkdError, match="--hidden must be integers"):
    config("--model=neumf", "--hidden=8,x")


def test_neumf_pretrained_towers_initialise_a_neumf(tmp_path):
  import dataclasses

  import numpy as np
  import tensorflow as tf

  from tfkd import training
  tiny = dict(TINY, model="neumf", epochs=2, learning_rate=0.01)
  dirs = {}
  for towers in ("gmf", "mlp"):
    dirs[towers] = str(tmp_path / towers)
    with flagsaver.flagsaver(workdir=dirs[towers], towers=towers, **tiny):
      train.main(["train"])
  workdir = str(tmp_path / "neumf")
  with flagsaver.flagsaver(workdir=workdir, pretrained=[dirs["gmf"], dirs["mlp"]],
                           pretrain_alpha=0.25, optimizer="sgd", **tiny):
    train.main(["train"])
    # The initial model (what training starts from): 0.25 s_GMF + 0.75 s_MLP.
    config = train.common.train_config()
  d = training.config_dataset(config)
  start = training._build(config, d)
  gmf, mlp = (training.load_model(dirs[t], d)[0] for t in ("gmf", "mlp"))
  users = tf.range(d.num_users)
  np.testing.assert_allclose(start.score_all(users),
                             0.25 * gmf.score_all(users) + 0.75 * mlp.score_all(users),
                             rtol=1e-5, atol=1e-5)
  assert "--pretrained=" in open(os.path.join(workdir, "flags.txt")).read()
  # Resuming (a checkpoint in the workdir) restores from the checkpoint, not the pretrained dirs.
  from tfkd import resume
  open(os.path.join(workdir, resume.FILE), "w").close()
  gone = dataclasses.replace(config, pretrained=(str(tmp_path / "deleted"),))
  training._build(gone, d)  # no load of the missing directory
  # A work directory that is not a one-tower NeuMF: one line, non-zero exit.
  r = run(["--dataset=synthetic", f"--workdir={tmp_path}/bad", "--model=neumf", "--dim=8",
           "--num_candidates=40", f"--pretrained={dirs['gmf']},{workdir}"], tmp_path)
  assert r.returncode != 0
  assert r.stderr.strip().splitlines()[-1].endswith(
      f"pretrained: {workdir} is not a one-tower NeuMF (trained with --towers=gmf or "
      "--towers=mlp)")
  # A tower that was never trained: one line naming the directory and what to run.
  r = run(["--dataset=synthetic", f"--workdir={tmp_path}/bad2", "--model=neumf", "--dim=8",
           "--num_candidates=40", f"--pretrained={dirs['gmf']},{tmp_path}/no_mlp"], tmp_path)
  assert r.returncode != 0
  last = r.stderr.strip().splitlines()[-1]
  assert f"pretrained: {tmp_path}/no_mlp: no trained model" in last
  assert "configs/neumf_mlp.flags" in last
