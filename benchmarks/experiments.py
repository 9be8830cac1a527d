"""The experiments of `python -m benchmarks.reproduce`, each named after the paper table or figure
it reproduces: the runs it needs (configs/ flagfiles plus flags) and how its section is built.

The experiments themselves are in `experiments_dcd.py` (the DCD paper: Kang et al., CIKM 2021,
../shared/papers/000_*.txt) and `experiments_cd.py` (the CD paper: Lee et al., ICDM 2019,
003_*.txt); this module has what they share and `get(name)`.
"""

import dataclasses
import json
from typing import Callable

from benchmarks.reproduce_report import Stat, paired_ttest, seeds_text
from benchmarks.reproduce_runs import ReproduceError, Run


@dataclasses.dataclass
class Experiment:
  name: str
  title: str  # what it reproduces
  runs: tuple  # the runs it reports; the runs they need run too
  build: Callable  # (Results) -> reproduce_report.Section
  default_seeds: tuple = (0, 1, 2, 3, 4)


class Results:
  """The metrics of finished jobs: values(run name, *keys) -> {seed: metrics[key][key]...}."""

  def __init__(self, jobs, teacher_seed=0):
    self.jobs = {(j.run.name, j.seed): j for j in jobs}
    self.teacher_seed, self._metrics = teacher_seed, {}

  def metrics(self, run, seed):
    if (run, seed) not in self._metrics:
      with open(self.jobs[(run, seed)].path("metrics.json")) as f:
        self._metrics[(run, seed)] = json.load(f)
    return self._metrics[(run, seed)]

  def seeds(self, run):
    return sorted(s for name, s in self.jobs if name == run)

  def values(self, run, *keys):
    out = {}
    for seed in self.seeds(run):
      value = self.metrics(run, seed)
      for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
      if isinstance(value, (int, float)):
        out[seed] = float(value)
    return out

  def workdirs(self, run):
    return {s: self.jobs[(run, s)].workdir for s in self.seeds(run)}


def config(name):
  return f"configs/{name}.flags"


def run(name, *flagfiles, extra=(), **kwargs):
  """A Run of configs/<flagfile>.flags (later ones override earlier ones) plus `extra` flags."""
  return Run(name, tuple(config(f) for f in flagfiles), tuple(extra), **kwargs)


def metric_row(res, label, run_, metrics, paper=None, split="test", digits=4):
  """[label, Stat per metric (with the paper's value), seeds]."""
  paper = paper or (None,) * len(metrics)
  cells = [Stat(res.values(run_.name, split, m), p, digits) for m, p in zip(metrics, paper)]
  return [label, *cells, seeds_text(res.seeds(run_.name))]


def gap_cell(res, run_):
  """'user / item' final rank discrepancy (metrics.json `discrepancy`), mean +- std over seeds."""
  user, item = (Stat(res.values(run_.name, "discrepancy", k), digits=1) for k in ("user", "item"))
  return f"{user} / {item}"


def ttest_lines(section, res, pairs, metric):
  """Adds "Paired t-tests:" and a line per (name, run a, run b, paper's verdict or None): the test
  of a against b on a test metric, kept as section.tests[name]."""
  lines = ["Paired t-tests (two-sided, scipy.stats.ttest_rel, over the seeds both runs have):"]
  for name, a, b, paper in pairs:
    test = paired_ttest(res.values(a.name, "test", metric), res.values(b.name, "test", metric))
    section.tests[name] = test
    lines.append(f"- {name}, test {metric}: "
                 + (str(test) if test else "fewer than two seeds in common, no test")
                 + (f"; the paper: {paper}" if paper else ""))
  section.add("\n".join(lines))


def per_seed_lines(section, res, labelled, metric, split="test"):
  """Adds each run's value of `metric` at every seed it finished ({label: run}), so the tests
  and means can be checked, and other runs paired with these seeds."""
  lines = [f"Per seed, {split} {metric}:"]
  for label, run_ in labelled.items():
    values = res.values(run_.name, split, metric)
    if values:
      lines.append(f"- {label}: " + ", ".join(f"{v:.4f} (seed {s})" for s, v in values.items()))
  if len(lines) > 1:
    section.add("\n".join(lines))


def describe(run_, teacher_seed):
  """How a run is defined, for the report: its configs, flags and the runs it needs."""
  text = " + ".join(f"`{f}`" for f in run_.flagfiles) or f"`python -m {run_.trainer}`"
  if run_.extra:
    text += " + `" + " ".join(run_.extra) + "`"
  if run_.teacher:
    text += f", teacher `{run_.teacher.name}` seed {teacher_seed}"
  if run_.pretrained:
    text += ", pre-trained from " + " and ".join(f"`{r.name}`" for r in run_.pretrained)
    text += " of the same seed"
  if run_.measures:
    text += f", timing `{run_.measures.name}` seed {teacher_seed}"
  return text


def all_experiments(grid=None):
  from benchmarks import experiments_cd, experiments_dcd
  return {e.name: e for e in (*experiments_dcd.experiments(grid), *experiments_cd.experiments())}


def get(name, grid=None):
  """The experiment called `name` (`grid`: dcd_fig1b's lambda values, per axis)."""
  found = all_experiments(grid)
  if name not in found:
    raise ReproduceError(f"--experiment={name}: unknown experiment; expected one of "
                         f"{', '.join(sorted(found))}")
  return found[name]
