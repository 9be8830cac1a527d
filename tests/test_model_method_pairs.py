"""Every distillation method works with every model: one tiny end-to-end run per pair."""

import json
import math
import os

import pytest
from absl.testing import flagsaver

from tfkd import distill as distill_lib, models
from trainers import distill

SMALL = dict(dataset="synthetic", num_candidates=30, epochs=2, eval_every=1, batch_size=512,
             dim=4, refresh_every=1, rrd_top=30, rrd_k=5, rrd_l=5, ir_rrd_top=20, ir_rrd_k=4,
             ir_rrd_l=4, ir_rrd_weight=1e-3, dcd_top=30, dcd_item_top=20, dcd_num_under=4,
             dcd_num_over=4, dcd_item_num_under=4, dcd_item_num_over=4, dcd_user_weight=1e-2,
             dcd_item_weight=1e-2)


@pytest.mark.parametrize("method", sorted(distill_lib.METHODS))
@pytest.mark.parametrize("model", sorted(models.MODELS))
def test_method_distils_model(tmp_path, model, method):
  teacher_flags = tmp_path / "teacher.flags"
  teacher_flags.write_text(f"--model={model}\n--dim=12\n--epochs=1\n--eval_every=1\n")
  workdir = str(tmp_path / "student")
  with flagsaver.flagsaver(workdir=workdir, teacher_dir=str(tmp_path / "teacher"),
                           teacher_flagfile=str(teacher_flags), model=model, method=method,
                           **SMALL):
    distill.main(["distill"])
  with open(os.path.join(workdir, "metrics.json")) as f:
    metrics = json.load(f)
  with open(os.path.join(workdir, "model.json")) as f:
    assert json.load(f)["model"] == model
  with open(os.path.join(tmp_path, "teacher", "model.json")) as f:
    assert json.load(f)["model"] == model
  assert 0 <= metrics["test"]["H@10"] <= 1
  assert all(math.isfinite(v) for v in metrics["discrepancy"].values())
