"""docs/extending.md shows the example files as they are, and the examples work from Python and
from the command line."""

import os
import re
import subprocess
import sys

import numpy as np

from conftest import REPO, subprocess_env, teacher_flagfile
from examples import squared_mf, top1_hint
from tfkd import distill, models


def test_the_guide_shows_the_example_files_verbatim():
  with open(os.path.join(REPO, "docs", "extending.md")) as f:
    blocks = re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.M | re.S)
  assert len(blocks) == 2
  for block, module in zip(blocks, (squared_mf, top1_hint)):
    with open(module.__file__) as f:
      assert block in f.read(), module.__name__


def test_the_example_model_trains_on_its_own_loss(tiny):
  model = models.build_for("squared_mf", tiny, dim=4)
  x = next(iter(model.make_train_dataset(tiny, 64, seed=0)))
  y = model(x).numpy()
  want = np.mean((y - np.concatenate([np.ones_like(y[:, :1]), np.zeros_like(y[:, 1:])], 1)) ** 2)
  np.testing.assert_allclose(float(model.data_loss(model(x))), want, rtol=1e-6)
  users = np.array([0, 5])
  np.testing.assert_allclose(model.score_all(users).numpy()[:, :7],
                             model.score(users, np.tile(np.arange(7), (2, 1))).numpy(), rtol=1e-5)


def test_the_example_method_runs_from_the_command_line(tmp_path):
  r = subprocess.run(
      [sys.executable, "-c", "import sys, examples.top1_hint; from absl import app; "
       "from trainers import distill; sys.argv[0] = 'distill'; app.run(distill.main)",
       "--dataset=synthetic", "--num_candidates=20", "--epochs=1", "--eval_every=1", "--dim=4",
       "--method=top1_hint", "--hint_weight=0.5", f"--workdir={tmp_path}/s",
       f"--teacher_dir={tmp_path}/t", f"--teacher_flagfile={teacher_flagfile(tmp_path)}"],
      cwd=REPO, env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "hint_loss" in r.stdout
  assert distill.get("top1_hint") is top1_hint.Top1Hint
