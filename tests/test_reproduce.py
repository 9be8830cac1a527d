"""`python -m benchmarks.reproduce`: tables equal to the runs' metrics.json, scipy's t-test,
figures, resuming after a kill, one-line errors, the report's markers.

Most tests run experiments in-process with a stand-in launcher that "runs" a job by writing a
metrics.json of seeded values (no subprocess, no training); one runs the real command on synthetic
data, kills it after its first run and runs it again.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import types
import zlib

import numpy as np
import pytest
from scipy import stats

from conftest import REPO, subprocess_env

sys.path.insert(0, REPO)  # benchmarks/ is not installed: python -m runs it from the repository

from benchmarks import experiments_dcd, reproduce  # noqa: E402
from benchmarks.reproduce_report import write_section  # noqa: E402
from benchmarks.reproduce_runs import CODE, ReproduceError  # noqa: E402

_PASSED = {"dataset": False, "epochs": False, "eval_every": False, "dim": False,
           "verbose": False, "deterministic": True}
# What each trainer defines, as far as these tests pass flags through (the real command asks them).
TRAINER_FLAGS = {"trainers.train": dict(_PASSED),
                 "trainers.distill": dict(_PASSED, rrd_top=False)}
DCD_METRICS = ("H@5", "M@5", "H@10", "M@10")
TINY = ["--dataset=synthetic", "--epochs=2", "--eval_every=1", "--dim=4", "--verbose=0"]


class Stub:
  """A launcher that runs a job by writing a metrics.json of values seeded by (run, seed); with
  `kill_at=k` the k-th start (from 0) raises KeyboardInterrupt instead, as a kill would stop it."""

  def __init__(self, kill_at=None):
    self.started, self.kill_at = [], kill_at

  def __call__(self, job):
    if self.kill_at is not None and len(self.started) == self.kill_at:
      raise KeyboardInterrupt
    self.started.append((job.run.name, job.seed))
    rng = np.random.default_rng(zlib.crc32(f"{job.run.name}/{job.seed}".encode()))
    u = lambda low, high: float(rng.uniform(low, high))  # noqa: E731
    test = {m: u(0.1, 0.6) for m in (*DCD_METRICS, "H@50", "NDCG@50")}
    metrics = dict(test=test, valid=dict(test), dataset="synthetic", best_epoch=2,
                   discrepancy={"user": u(40, 80), "item": u(60, 100)}, num_parameters=1234,
                   seconds_per_epoch=u(0.2, 1.0), epochs_run=3, train_seconds=1.0,
                   rank_seconds=0.01, num_users=10, num_items=20,
                   history=[{"epoch": e, "NDCG@50": u(0.05, 0.2)} for e in (1, 2, 3)])
    with open(job.path("metrics.json"), "w") as f:
      json.dump(metrics, f)
    return types.SimpleNamespace(poll=lambda: 0, terminate=lambda: None)  # already finished


def run_stub(tmp_path, experiment, launcher, lines=None, **kwargs):
  return reproduce.reproduce(experiment, root=str(tmp_path / "runs"),
                             report=str(tmp_path / "REPORT.md"), launcher=launcher,
                             poll_seconds=0, trainer_flags=TRAINER_FLAGS,
                             say=(lines if lines is not None else []).append, **kwargs)


def read_metrics(tmp_path, run, seed, group="shared", file="metrics.json"):
  with open(tmp_path / "runs" / group / run / f"seed{seed}" / file) as f:
    return json.load(f)


def report_text(tmp_path):
  return (tmp_path / "REPORT.md").read_text()


def report_line(tmp_path, start):
  lines = [l for l in report_text(tmp_path).splitlines() if l.startswith(start)]
  assert len(lines) == 1, (start, lines)
  return lines[0]


def test_table_equals_the_runs_metrics(tmp_path):
  seeds = (0, 1, 2)
  out = run_stub(tmp_path, "dcd_table2", Stub(), seeds=seeds)
  for model, prefix in (("BPR", "bpr"), ("NeuMF", "neumf")):
    table = out.section.tables[model]
    means = {}
    for method in ("Teacher", "Student", "RRD", "DCD"):
      run = f"{prefix}_{method.lower()}"
      line = report_line(tmp_path, f"| {model} | {method} |")
      for metric in DCD_METRICS:
        values = [read_metrics(tmp_path, run, s)["test"][metric] for s in seeds]
        mean, std = statistics.mean(values), statistics.stdev(values)  # sample std, as reported
        cell = table.cell(method, metric)
        assert cell.mean == pytest.approx(mean) and cell.std == pytest.approx(std)
        assert f"{mean:.4f} +- {std:.4f}" in line
        means[(method, metric)] = mean
      # Each seed's H@5, so other runs can be paired with them.
      per_seed = ", ".join(f"{read_metrics(tmp_path, run, s)['test']['H@5']:.4f} (seed {s})"
                           for s in seeds)
      assert report_line(tmp_path, f"- {model} {method}: ") == f"- {model} {method}: {per_seed}"
    # improve.r: DCD over RRD, as the paper defines it, with the paper's value beside it.
    line = report_line(tmp_path, f"| {model} | improve.r |")
    gain = 100 * (means[("DCD", "H@5")] - means[("RRD", "H@5")]) / means[("RRD", "H@5")]
    assert f"{gain:+.2f}% ({experiments_dcd.PAPER_TABLE2[model]['improve.r'][0]:.2f}%)" in line
  assert "(0.5282)" in report_line(tmp_path, "| BPR | Teacher |")  # the paper's value beside ours


def test_ttest_equals_scipys(tmp_path):
  seeds = (0, 1, 2, 3)
  out = run_stub(tmp_path, "dcd_table2", Stub(), seeds=seeds)
  dcd = [read_metrics(tmp_path, "bpr_dcd", s)["test"]["H@5"] for s in seeds]
  rrd = [read_metrics(tmp_path, "bpr_rrd", s)["test"]["H@5"] for s in seeds]
  expected = stats.ttest_rel(dcd, rrd)
  test = out.section.tests["BPR: DCD vs RRD"]
  assert test.seeds == list(seeds)
  assert test.t == pytest.approx(expected.statistic) and test.p == pytest.approx(expected.pvalue)
  assert test.diff == pytest.approx(np.mean(dcd) - np.mean(rrd))
  assert f"t = {expected.statistic:.2f}, p = {expected.pvalue:.2g}" in report_text(tmp_path)


def _png(path):
  import matplotlib.image
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 100
  return image


def test_figures_draw_the_runs_values(tmp_path):
  seeds, grid = (0, 1), (0.0, 1e-3, 1e-2)
  out = run_stub(tmp_path, "dcd_fig1a", Stub(), seeds=seeds)
  ax = out.section.figures["dcd_fig1a"].axes[0]
  methods = {"RRD": "bpr_rrd", "UCD only": "bpr_dcd_wo_item", "ICD only": "bpr_dcd_wo_user",
             "DCD": "bpr_dcd"}
  assert [t.get_text() for t in ax.get_legend().get_texts()] == list(methods)
  expected = [np.mean([read_metrics(tmp_path, run, s)["discrepancy"][side] for s in seeds])
              for run in methods.values() for side in ("user", "item")]
  np.testing.assert_allclose([p.get_height() for p in ax.patches], expected)
  _png(tmp_path / "results" / "dcd_fig1a.png")
  assert "](results/dcd_fig1a.png)" in report_text(tmp_path)
  out = run_stub(tmp_path, "dcd_fig1b", Stub(), seeds=(0,), grid=grid)
  shown = out.section.figures["dcd_fig1b"].axes[0].images[0].get_array()
  expected = [[read_metrics(tmp_path, f"dcd_u{u:g}_i{i:g}", 0, "dcd_fig1b")["test"]["H@5"]
               for i in grid] for u in grid]
  np.testing.assert_allclose(np.asarray(shown), expected)
  _png(tmp_path / "results" / "dcd_fig1b.png")


@pytest.mark.parametrize("name", reproduce.EXPERIMENTS)
def test_every_experiment_reports(tmp_path, name):
  grid = (0.0, 1e-3, 1e-2) if name == "dcd_fig1b" else ()
  out = run_stub(tmp_path, name, Stub(), seeds=(0, 1), grid=grid)
  text = report_text(tmp_path)
  assert text.startswith(f"<!-- reproduce:{name} begin -->\n## {out.section.title}\n")
  assert text.rstrip().endswith(f"<!-- reproduce:{name} end -->")
  for needed in ("Code commit: ", "Data: synthetic", "Seeds: 0,1", "wall time"):
    assert needed in text
  assert not out.failed and all(j.status == "reuse" for j in out.jobs)
  for stem in out.section.figures:
    _png(tmp_path / "results" / f"{stem}.png")


def test_killed_reproduce_resumes_without_redoing_finished_runs(tmp_path):
  with pytest.raises(KeyboardInterrupt):
    run_stub(tmp_path, "dcd_fig1a", Stub(kill_at=3), seeds=(0, 1))
  finished = {}
  for path in sorted((tmp_path / "runs").glob("*/*/seed*/metrics.json")):
    finished[path] = (os.stat(path).st_mtime_ns, (path.parent / "run.json").read_text())
  assert len(finished) == 3
  time.sleep(0.01)  # a rewrite would show in the modification times
  again, lines = Stub(), []
  out = run_stub(tmp_path, "dcd_fig1a", again, lines, seeds=(0, 1))
  ran = {(p.parent.parent.name, int(p.parent.name[4:])) for p in finished}
  everything = {(j.run.name, j.seed) for j in out.jobs}
  assert len(everything) == 9  # the teacher, and 4 students at 2 seeds
  assert sorted(again.started) == sorted(everything - ran)
  for path, (mtime, record) in finished.items():
    assert os.stat(path).st_mtime_ns == mtime and (path.parent / "run.json").read_text() == record
  assert any("reuse" in line for line in lines)


def test_mismatched_runs_are_listed_not_mixed_in_and_rerun_replaces_them(tmp_path):
  run_stub(tmp_path, "dcd_table3", Stub(), seeds=(0,), passthrough=["--epochs=1"])
  lines, stub = [], Stub()
  with pytest.raises(ReproduceError, match="no run of dcd_table3 finished"):
    run_stub(tmp_path, "dcd_table3", stub, lines, seeds=(0,), passthrough=["--epochs=2"])
  assert not stub.started
  plan = "\n".join(lines)
  assert "  shared/bpr_dcd: mismatched 0 (seed 0: flags --epochs=1 -> --epochs=2)" in plan
  assert "--rerun replaces them" in plan
  out = run_stub(tmp_path, "dcd_table3", stub, seeds=(0,), passthrough=["--epochs=2"],
                 rerun=True)
  assert len(stub.started) == 6 and all(j.status == "reuse" for j in out.jobs)
  assert "--epochs=2" in read_metrics(tmp_path, "bpr_dcd", 0, file="run.json")["identity"]["flags"]


def test_a_run_another_reproduce_holds_is_left_alone(tmp_path):
  teacher = tmp_path / "runs" / "shared" / "bpr_teacher" / "seed0"
  teacher.mkdir(parents=True)
  lines, stub = [], Stub()
  with subprocess.Popen(["sleep", "60"]) as other:  # a live process holding the teacher's lock
    (teacher / "reproduce.lock").write_text(json.dumps({"pid": other.pid,
                                                        "host": socket.gethostname()}))
    with pytest.raises(ReproduceError, match="no run of dcd_fig1a finished"):
      run_stub(tmp_path, "dcd_fig1a", stub, lines, seeds=(0,))
    other.kill()
  assert not stub.started
  assert f"  shared/bpr_teacher: running 0 (seed 0: by another reproduce, pid {other.pid})" \
      in lines[0]
  assert "  shared/bpr_rrd: blocked 0 (seed 0: needs shared/bpr_teacher seed 0 (running))" \
      in lines[0]


def test_run_identity_is_resolved_flags_and_commit(tmp_path):
  run_stub(tmp_path, "dcd_fig1a", Stub(), seeds=(0,), passthrough=["--epochs=1", "--rrd_top=30"])
  # The code commit: the last commit that changed what runs execute (a docs or RESULTS.md
  # commit leaves the runs valid).
  commit = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%H", "--", *CODE],
                          capture_output=True, text=True).stdout.strip()
  rrd, teacher = (read_metrics(tmp_path, r, 0, file="run.json") for r in ("bpr_rrd", "bpr_teacher"))
  assert rrd["identity"]["commit"] == commit
  flags_ = rrd["identity"]["flags"]
  # rrd.flags with its includes expanded (base.flags, bpr_student.flags); the flag passed through
  # wins over the config's --epochs=500; workdirs are not part of the identity.
  assert {"--method=rrd", "--model=bpr", "--dataset=citeulike-derrd", "--epochs=1",
          "--rrd_top=30", "--seed=0"} <= set(flags_)
  assert "--epochs=500" not in flags_ and not any(f.startswith("--workdir") for f in flags_)
  assert rrd["identity"]["needs"] == {"teacher_dir": [teacher["key"]]}
  # A flag only trainers.distill defines is not given to the teacher's trainers.train run.
  assert "--rrd_top=30" not in teacher["command"] and "--epochs=1" in teacher["command"]


def test_report_only_with_nothing_run_says_so_in_one_line(tmp_path, capsys):
  code = reproduce.main(["--experiment=dcd_table3", f"--root={tmp_path}/runs",
                         f"--report={tmp_path}/REPORT.md", "--report_only"])
  out, err = capsys.readouterr()
  lines = (out + err).strip().splitlines()
  assert code != 0 and len(lines) == 1, lines
  assert lines[0].startswith("reproduce: error: --report_only: nothing of dcd_table3 has run")
  assert not (tmp_path / "REPORT.md").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--experiment=table9"], "--experiment=table9: unknown experiment; expected one of "
                              "cd_fig6, cd_table2, dcd_fidelity, dcd_fig1a, dcd_fig1b, "
                              "dcd_speed, dcd_table2, dcd_table3, speed"),
    ([], "--experiment: missing; expected one of dcd_table2"),
    (["--experiment=dcd_table2", "--seeds=0,x"], "--seeds=0,x: expected integers"),
    (["--experiment=dcd_fig1b", "--grid=0,1e-3"], "--grid=0,1e-3: expected at least 3 values"),
    (["--experiment=dcd_table2", "--seed=3"], "--seed=3: reproduce sets --seed"),
    (["--experiment=dcd_table2", "stray"], "unexpected argument 'stray'"),
])
def test_bad_input_is_one_line(argv, expected, capsys):
  code = reproduce.main(argv)
  out, err = capsys.readouterr()
  assert code == 1 and not out and len(err.strip().splitlines()) == 1, err
  assert err.startswith(f"reproduce: error: {expected}"), err


def test_unknown_passthrough_flag_is_refused():
  with pytest.raises(ReproduceError, match=r"--no_such_flag=1: no flag --no_such_flag in "
                                           r"trainers.train or trainers.distill"):
    reproduce.check_passthrough(["--no_such_flag=1"], TRAINER_FLAGS)
  reproduce.check_passthrough(["--nodeterministic", "--rrd_top=3"], TRAINER_FLAGS)  # accepted


def test_report_rewrite_leaves_text_outside_the_markers_untouched(tmp_path):
  path = tmp_path / "RESULTS.md"
  before = "# Results\n\nHand-written, kept: <!-- reproduce:other begin -->\r\nü\n\n"
  after = "\n\n## Later\ntext without a final newline"
  path.write_bytes((before + "<!-- reproduce:x begin -->\nold\n<!-- reproduce:x end -->"
                    + after).encode())
  write_section(str(path), "x", "## New\n\nbody")
  new = path.read_bytes().decode()
  assert new == before + "<!-- reproduce:x begin -->\n## New\n\nbody\n<!-- reproduce:x end -->" \
      + after
  write_section(str(path), "x", "## New\n\nbody")
  assert path.read_bytes().decode() == new  # idempotent
  write_section(str(path), "y", "appended")  # no markers yet: appended, the rest kept
  assert path.read_bytes().decode() == new + (
      "\n\n<!-- reproduce:y begin -->\nappended\n<!-- reproduce:y end -->\n")
  fresh = tmp_path / "new" / "dir" / "REPORT.md"  # a report in a directory not made yet
  write_section(str(fresh), "x", "body")
  assert fresh.read_text() == "<!-- reproduce:x begin -->\nbody\n<!-- reproduce:x end -->\n"
  path.write_text("<!-- reproduce:x begin -->\nno end\n")
  with pytest.raises(ReproduceError, match="exactly one <!-- reproduce:x end -->"):
    write_section(str(path), "x", "body")


def test_rank_time_job_measures_a_models_catalog(tmp_path):
  from benchmarks import reproduce_rank_time
  (tmp_path / "model.json").write_text(json.dumps(
      {"model": "bpr", "config": {"dim": 4}, "num_users": 30, "num_items": 40}))
  metrics = reproduce_rank_time.measure(str(tmp_path), repeats=2, batch=16)
  assert metrics["num_users"] == 30 and metrics["num_items"] == 40
  assert metrics["num_parameters"] == (30 + 40) * 4 and len(metrics["pass_seconds"]) == 2


def test_real_command_killed_after_its_first_run_resumes(tmp_path):
  """python -m benchmarks.reproduce on synthetic data: killed (SIGKILL) once its first run has
  finished, then run again: the finished run is kept, only the others run, the report is written
  with the figure of the runs' TensorBoard curves."""
  root, report = tmp_path / "runs", tmp_path / "out" / "REPORT.md"
  command = [sys.executable, "-m", "benchmarks.reproduce", "--experiment=cd_fig6", "--seeds=0",
             f"--root={root}", f"--report={report}", *TINY]
  env = subprocess_env(tmp_path)
  teacher = root / "shared" / "amusic_cdae_teacher" / "seed0"
  first = subprocess.Popen([*command, "--jobs=1"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 300
  while not (teacher / "metrics.json").exists() and first.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  first.send_signal(signal.SIGKILL)
  first.communicate()
  assert (teacher / "metrics.json").exists() and not report.exists()
  kept = (os.stat(teacher / "metrics.json").st_mtime_ns, (teacher / "run.json").read_text())
  second = subprocess.run([*command, "--jobs=2"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
  assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
  assert "  shared/amusic_cdae_teacher: reuse 0" in second.stdout
  done = sorted(l.split(" done   ")[1].split(" in ")[0] for l in second.stdout.splitlines()
                if " done   " in l)
  assert done == [f"shared/amusic_cdae_{r} seed 0" for r in ("cd_sg", "cd_tg", "student")]
  assert (os.stat(teacher / "metrics.json").st_mtime_ns,
          (teacher / "run.json").read_text()) == kept
  assert "<!-- reproduce:cd_fig6 end -->" in report.read_text()
  _png(report.parent / "results" / "cd_fig6.png")
  # The curve read back from TensorBoard holds the validation value metrics.json has at the
  # best epoch; the figure draws it, and the section reports the runs of the same identity.
  student = root / "shared" / "amusic_cdae_student" / "seed0"
  with open(student / "metrics.json") as f:
    metrics = json.load(f)
  from benchmarks.reproduce_report import validation_curve
  curve = validation_curve(str(student), "NDCG@50")
  assert sorted(curve) == [1, 2]
  assert curve[metrics["best_epoch"]] == pytest.approx(metrics["valid"]["NDCG@50"], rel=1e-5)
  out = reproduce.reproduce("cd_fig6", seeds=(0,), root=str(root), report=str(report),
                            report_only=True, passthrough=TINY, trainer_flags=TRAINER_FLAGS,
                            say=[].append)
  ax = out.section.figures["cd_fig6"].axes[0]
  assert [l.get_label() for l in ax.lines] == ["Student", "CD-TG", "CD-SG", "teacher (test)"]
  np.testing.assert_allclose(ax.lines[0].get_ydata(), [curve[1], curve[2]])


def test_a_method_setting_reaches_only_the_runs_of_that_method(tmp_path):
  """trainers.distill refuses another method's flags, so a passed-through --dcd_top goes to the
  DCD runs of dcd_fig1a and not to its RRD run (nor to the teacher)."""
  trainer_flags = {**TRAINER_FLAGS,
                   "trainers.distill": dict(TRAINER_FLAGS["trainers.distill"], dcd_top=False)}
  reproduce.reproduce("dcd_fig1a", root=str(tmp_path / "runs"), report=str(tmp_path / "R.md"),
                      launcher=Stub(), poll_seconds=0, trainer_flags=trainer_flags,
                      say=[].append, seeds=(0,), passthrough=["--dcd_top=30"])
  rrd, dcd = (read_metrics(tmp_path, r, 0, file="run.json") for r in ("bpr_rrd", "bpr_dcd"))
  assert "--dcd_top=30" in dcd["identity"]["flags"]
  assert "--dcd_top=30" not in rrd["identity"]["flags"]


def test_report_names_the_runs_it_left_out(tmp_path):
  out = run_stub(tmp_path, "dcd_fig1a", Stub(), seeds=(0, 1, 2), only=("bpr_rrd",))
  assert {j.run.name for j in out.jobs if j.status == "reuse"} == {"bpr_teacher", "bpr_rrd"}
  assert report_line(tmp_path, "- Not finished (left out): ") == (
      "- Not finished (left out): `bpr_dcd_wo_item` seeds 0-2; `bpr_dcd_wo_user` seeds 0-2; "
      "`bpr_dcd` seeds 0-2.")
  assert "| RRD |" in report_text(tmp_path) and "| DCD | - | - | - | none |" in report_text(tmp_path)


def test_dcd_speed_refresh_seconds_are_the_median_after_the_first():
  from benchmarks import experiments_dcd

  class Res:  # two seeds' metrics.json `refreshes`; seed 2 has none (a plain student)
    def seeds(self, name):
      return [0, 1, 2]

    def metrics(self, name, seed):
      return {0: {"refreshes": [{"epoch": 0, "refresh_seconds": 20.0},
                                {"epoch": 1, "refresh_seconds": 1.0},
                                {"epoch": 2, "refresh_seconds": 3.0},
                                {"epoch": 3, "refresh_seconds": 2.0}]},
              1: {"refreshes": [{"epoch": 0, "refresh_seconds": 9.0},
                                {"epoch": 5, "refresh_seconds": 0.5}]},
              2: {}}[seed]

  assert experiments_dcd.refresh_seconds(Res(), experiments_dcd.BPR_DCD_ROLLING) == \
      {0: 2.0, 1: 0.5}
