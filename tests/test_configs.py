"""Every shipped config parses with the trainer that reads it (no unknown or out-of-range flag),
and opens with the command that runs it."""

import glob
import importlib.util
import os

import pytest
from absl import flags
from absl.testing import flagsaver

from conftest import REPO
from trainers import distill, train  # noqa: F401  (define the flags)

_spec = importlib.util.spec_from_file_location(
    "run_configs", os.path.join(REPO, "benchmarks", "run_configs.py"))
run_configs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_configs)  # defines its flags (--configs, --trainer, ...)

INCLUDES = ("base.flags", "ml100k.flags", "amusic.flags", "amusic_cd.flags",
            "amusic_rd.flags")  # included by others
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*.flags"))
                 if os.path.basename(p) not in INCLUDES)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_parses_and_states_its_command(path, monkeypatch):
  monkeypatch.chdir(REPO)
  rel = os.path.relpath(path, REPO)
  with open(path) as f:
    text = f.read()
  with flagsaver.flagsaver():
    flags.FLAGS(["prog", f"--flagfile={rel}"])
    # A config that picks a distillation method (itself or through an included config) runs
    # with trainers.distill, any other (teachers, students, NeuMF's towers) with trainers.train.
    trainer = "trainers.distill" if flags.FLAGS["method"].present else "trainers.train"
    assert f"python -m {trainer} --flagfile={rel}" in text
    # benchmarks/run_configs.py's automatic choice picks the same trainer.
    with flagsaver.flagsaver(trainer="auto"):
      assert run_configs.trainer_for(rel) == trainer
    assert flags.FLAGS.workdir.startswith("workdirs/")
    assert flags.FLAGS.dataset in ("citeulike-derrd", "ml-100k")
    from trainers import common
    common.model_config(flags.FLAGS)  # the model flags fit the model


def test_run_configs_picks_distill_for_a_method_in_an_include_or_extra(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "inner.flags").write_text("--method=cd\n")
  (tmp_path / "outer.flags").write_text("# --method=rd in a comment is not a flag\n"
                                        "--flagfile=outer.flags\n--flagfile=inner.flags\n")
  (tmp_path / "plain.flags").write_text("--model=bpr\n--methodical=1\n")
  with flagsaver.flagsaver(trainer="auto"):
    assert run_configs.trainer_for("outer.flags") == "trainers.distill"  # include, self-include
    assert run_configs.trainer_for("plain.flags") == "trainers.train"
    assert run_configs.trainer_for("plain.flags", ["--method=rd"]) == "trainers.distill"
    assert run_configs.trainer_for("plain.flags", ["--flagfile=inner.flags"]) == "trainers.distill"
  with flagsaver.flagsaver(trainer="trainers.distill"):
    assert run_configs.trainer_for("plain.flags") == "trainers.distill"


@pytest.mark.parametrize("config", ["cdae_teacher.flags", "cd_sg.flags"])
def test_amusic_include_moves_an_ml100k_config_to_amazon_music(config, monkeypatch):
  monkeypatch.chdir(REPO)
  with flagsaver.flagsaver():
    flags.FLAGS(["prog", f"--flagfile=configs/{config}", "--flagfile=configs/amusic.flags"])
    assert flags.FLAGS.dataset == "amazon-music"
    assert (flags.FLAGS.min_user_interactions, flags.FLAGS.min_item_interactions) == (10, 5)
    assert flags.FLAGS.eval_protocol == "full" and flags.FLAGS.split == "timestamp"


@pytest.mark.parametrize("config", ["cd_tg.flags", "cd_sg.flags"])
def test_amusic_cd_include_sets_the_amazon_music_cd_settings(config, monkeypatch):
  monkeypatch.chdir(REPO)
  with flagsaver.flagsaver():
    flags.FLAGS(["prog", f"--flagfile=configs/{config}", "--flagfile=configs/amusic_cd.flags"])
    assert flags.FLAGS.dataset == "amazon-music" and flags.FLAGS.method == "cd"
    assert flags.FLAGS.cd_sample_size == 50 and flags.FLAGS.cd_cf_loss == "full"
    assert flags.FLAGS.cd_guide == ("teacher" if config == "cd_tg.flags" else "student")
    assert flags.FLAGS.teacher_dir == "workdirs/amusic_cdae_teacher"
    assert flags.FLAGS.teacher_flagfile == "configs/cdae_teacher.flags"


def test_amusic_rd_include_sets_the_amazon_music_rd_settings(monkeypatch):
  monkeypatch.chdir(REPO)
  with flagsaver.flagsaver():
    flags.FLAGS(["prog", "--flagfile=configs/rd.flags", "--flagfile=configs/amusic_rd.flags"])
    assert flags.FLAGS.dataset == "amazon-music" and flags.FLAGS.method == "rd"
    assert (flags.FLAGS.rd_top, flags.FLAGS.rd_lambda) == (50, 10.0)
    assert flags.FLAGS.rd_weight == 0.5 and flags.FLAGS.rd_dynamic_start == 10  # rd.flags' own
    assert flags.FLAGS.teacher_dir == "workdirs/amusic_cdae_teacher"
    assert flags.FLAGS.teacher_flagfile == "configs/cdae_teacher.flags"


@pytest.mark.parametrize("config",
                         ["caser_cd_base.flags", "caser_cd_tg.flags", "caser_cd_sg.flags"])
def test_caser_cd_configs_use_the_students_own_loss_with_the_papers_caser_settings(
    config, monkeypatch):
  # The README's Caser CD rows: L_CF is the student's own loss (chosen on validation), the rest
  # is the CD paper's Caser setting; the base model is the Caser student on ML-100K.
  monkeypatch.chdir(REPO)
  with flagsaver.flagsaver():
    flags.FLAGS(["prog", f"--flagfile=configs/{config}"])
    assert flags.FLAGS.model == "caser" and flags.FLAGS.dataset == "ml-100k"
    assert flags.FLAGS.method == "cd" and flags.FLAGS.cd_cf_loss == "full"
    assert (flags.FLAGS.cd_alpha, flags.FLAGS.cd_beta) == (1.0, 0.0)
    assert flags.FLAGS.cd_sample_size == 50 and flags.FLAGS.cd_weight == 0.5
    assert flags.FLAGS.cd_kd_pass == "clean" and flags.FLAGS.cd_scheme == "linear"
    guides = {"caser_cd_base.flags": "uniform", "caser_cd_tg.flags": "teacher",
              "caser_cd_sg.flags": "student"}
    assert flags.FLAGS.cd_guide == guides[config]
    assert flags.FLAGS.teacher_flagfile == "configs/caser_teacher.flags"


def test_dcd_main_config_refreshes_every_epoch_and_ablations_ablate_it(monkeypatch):
  # configs/dcd.flags (README's 5-seed DCD row): lists refreshed every epoch, lambda 1e-3 per
  # side, XLA-compiled steps; each ablation is it with one part removed (README's ablation
  # table); dcd_refresh5.flags keeps the paper's schedule (every 5 epochs, 1e-4, plain steps).
  monkeypatch.chdir(REPO)
  with flagsaver.flagsaver():
    flags.FLAGS(["prog", "--flagfile=configs/dcd.flags"])
    f = flags.FLAGS
    assert (f.refresh_every, f.dcd_user_weight, f.dcd_item_weight) == (1, 1e-3, 1e-3)
    assert f.jit_compile and f.dcd_candidates == "union" and f.method == "dcd"
    assert not f.dcd_deterministic
  with flagsaver.flagsaver():
    flags.FLAGS(["prog", "--flagfile=configs/dcd_refresh5.flags"])
    f = flags.FLAGS
    assert (f.refresh_every, f.dcd_user_weight, f.dcd_item_weight) == (5, 1e-4, 1e-4)
    assert not f.jit_compile
  expected = {"dcd_wo_item": (1e-3, 0.0), "dcd_wo_user": (0.0, 1e-3),
              "dcd_wo_sampling": (1e-3, 1e-3)}
  for name, weights in expected.items():
    with flagsaver.flagsaver():
      flags.FLAGS(["prog", f"--flagfile=configs/{name}.flags"])
      f = flags.FLAGS
      assert f.refresh_every == 1 and f.jit_compile and f.dcd_candidates == "union", name
      assert (f.dcd_user_weight, f.dcd_item_weight) == weights, name
      assert f.dcd_deterministic == (name == "dcd_wo_sampling"), name


@pytest.mark.parametrize("fast,base,pairs,changed", [
    ("rrd_fast", "rrd", 384, {"jit_compile"}), ("dcd_fast", "dcd", 128, set())])
def test_fast_configs_are_their_base_with_fewer_list_passes(monkeypatch, fast, base, pairs,
                                                            changed):
  # README's fast rows: the base config's run, but each step scores the lists of its batch's
  # first `pairs` pairs only; nothing else may differ (their results are compared with the base's).
  monkeypatch.chdir(REPO)
  values = {}
  for name in (base, fast):
    with flagsaver.flagsaver():
      flags.FLAGS(["prog", f"--flagfile=configs/{name}.flags"])
      values[name] = flags.FLAGS.flag_values_dict()
  differ = {k for k in values[base] if values[base][k] != values[fast][k]}
  assert differ == {"list_pairs", "workdir", *changed}
  assert values[base]["list_pairs"] == 0 and values[fast]["list_pairs"] == pairs
  assert values[fast]["jit_compile"]


def test_rolling_config_is_dcd_fast_with_a_rolling_refresh(monkeypatch):
  monkeypatch.chdir(REPO)
  values = {}
  for name in ("dcd_fast", "dcd_rolling"):
    with flagsaver.flagsaver():
      flags.FLAGS(["prog", f"--flagfile=configs/{name}.flags"])
      values[name] = flags.FLAGS.flag_values_dict()
  fast, rolling = values["dcd_fast"], values["dcd_rolling"]
  assert {k for k in fast if fast[k] != rolling[k]} == {"dcd_refresh_parts", "workdir"}
  assert fast["dcd_refresh_parts"] == 1 and rolling["dcd_refresh_parts"] == 3
