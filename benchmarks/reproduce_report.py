"""The report of `python -m benchmarks.reproduce`: cells over seeds, tables, paired t-tests, figures
and the section of the report file an experiment owns.

A section sits between `<!-- reproduce:<experiment> begin -->` and `<!-- reproduce:<experiment>
end -->`; writing it replaces that span and leaves every other byte of the file as it was (a
file without the markers gets the section appended). Figures are matplotlib figures drawn with
the Agg backend, saved as PNGs in `results/` beside the report.
"""

import dataclasses
import math
import os
from typing import Optional

import numpy as np


@dataclasses.dataclass
class Stat:
  """A metric over seeds ({seed: value}), with the paper's value."""
  values: dict
  paper: Optional[float] = None
  digits: int = 4

  @property
  def mean(self):
    return float(np.mean(list(self.values.values()))) if self.values else None

  @property
  def std(self):
    """The sample standard deviation (ddof 1); None below two seeds."""
    return float(np.std(list(self.values.values()), ddof=1)) if len(self.values) > 1 else None

  def __str__(self):
    d = self.digits
    ours = "-" if self.mean is None else f"{self.mean:.{d}f}"
    if self.std is not None:
      ours += f" +- {self.std:.{d}f}"
    return ours if self.paper is None else f"{ours} ({self.paper:.{d}f})"


@dataclasses.dataclass
class Gain:
  """The relative improvement of one mean over another, in percent, with the paper's."""
  ours: Optional[float]
  base: Optional[float]
  paper: Optional[float] = None

  @property
  def percent(self):
    if self.ours is None or not self.base:
      return None
    return 100.0 * (self.ours - self.base) / self.base

  def __str__(self):
    ours = "-" if self.percent is None else f"{self.percent:+.2f}%"
    return ours if self.paper is None else f"{ours} ({self.paper:.2f}%)"


@dataclasses.dataclass
class TTest:
  """A two-sided paired t-test (`scipy.stats.ttest_rel`) of a against b over their common seeds."""
  seeds: list
  diff: float
  t: float
  p: float

  def __str__(self):
    return (f"{self.diff:+.4f}, t = {self.t:.2f}, p = {self.p:.2g} "
            f"(paired over seeds {seeds_text(self.seeds)})")


def paired_ttest(a, b):
  """TTest of {seed: value} a against b; None with fewer than two common seeds."""
  from scipy import stats
  seeds = sorted(set(a) & set(b))
  if len(seeds) < 2:
    return None
  x, y = [a[s] for s in seeds], [b[s] for s in seeds]
  result = stats.ttest_rel(x, y)
  return TTest(seeds, float(np.mean(x) - np.mean(y)), float(result.statistic),
               float(result.pvalue))


def seeds_text(seeds):
  seeds = sorted(seeds)
  if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
    return f"{seeds[0]}-{seeds[-1]}"
  return ",".join(map(str, seeds)) or "none"


@dataclasses.dataclass
class Table:
  header: list
  rows: list  # lists of cells: str, Stat, Gain

  def cell(self, row, column):
    """The cell of the row whose first cells include `row`, under `column`."""
    j = self.header.index(column)
    for r in self.rows:
      if row in [str(c) for c in r[:j]]:
        return r[j]
    raise KeyError(row)

  def markdown(self):
    lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
    return "\n".join(lines)


@dataclasses.dataclass
class Section:
  """What an experiment reports: Markdown parts (str or Table) in order, the figures
  ({file stem: figure}), and the tables and tests by name for tests and callers."""
  title: str
  parts: list = dataclasses.field(default_factory=list)
  tables: dict = dataclasses.field(default_factory=dict)
  tests: dict = dataclasses.field(default_factory=dict)
  figures: dict = dataclasses.field(default_factory=dict)

  def add(self, part, name=None):
    self.parts.append(part)
    if name is not None:
      self.tables[name] = part
    return part

  def markdown(self):
    return "\n\n".join(p.markdown() if isinstance(p, Table) else p for p in self.parts)


def markers(name):
  return f"<!-- reproduce:{name} begin -->", f"<!-- reproduce:{name} end -->"


def write_section(path, name, text):
  """Puts `text` between the markers of `name` in the file at `path` (created if missing, with
  its directory)."""
  from benchmarks.reproduce_runs import ReproduceError
  begin, end = markers(name)
  old = ""
  if os.path.exists(path):
    with open(path, encoding="utf-8", newline="") as f:
      old = f.read()
  block = f"{begin}\n{text.strip()}\n{end}"
  i = old.find(begin)
  if i < 0:
    if old.find(end) >= 0:
      raise ReproduceError(f"{path}: {end} without {begin} before it; fix the markers")
    new = old + ("\n" if old and not old.endswith("\n") else "") + ("\n" if old else "")
    new += block + "\n"
  else:
    j = old.find(end, i)
    if j < 0 or old.find(begin, i + 1) >= 0:
      raise ReproduceError(f"{path}: {begin} needs exactly one {end} after it; fix the markers")
    new = old[:i] + block + old[j + len(end):]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8", newline="") as f:
    f.write(new)
  os.replace(tmp, path)


def save_figure(figure, path):
  """Writes a figure as a PNG with the Agg backend."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  FigureCanvasAgg(figure)
  figure.savefig(path, format="png", dpi=100, bbox_inches="tight")


def _figure(width=6.0, height=4.0):
  from matplotlib.figure import Figure
  figure = Figure(figsize=(width, height))
  return figure, figure.add_subplot()


def bar_chart(groups, series, ylabel, title):
  """Grouped bars: for each group (x), one bar per series {name: [(mean, std or None)]}."""
  figure, ax = _figure()
  width = 0.8 / max(len(series), 1)
  x = np.arange(len(groups))
  for k, (name, points) in enumerate(series.items()):
    means = [np.nan if m is None else m for m, _ in points]
    errors = [0.0 if s is None else s for _, s in points]
    ax.bar(x + (k - (len(series) - 1) / 2) * width, means, width, yerr=errors, label=name,
           capsize=3)
  ax.set_xticks(x, groups)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(ncols=min(len(series), 4), loc="upper center", bbox_to_anchor=(0.5, -0.08))
  return figure


def heatmap(values, row_labels, column_labels, row_title, column_title, title):
  """A grid of values (NaN where missing), each written in its cell."""
  figure, ax = _figure(1.2 * len(column_labels) + 2, 1.0 * len(row_labels) + 1.5)
  grid = np.asarray(values, dtype=float)
  image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
  ax.set_xticks(range(len(column_labels)), column_labels)
  ax.set_yticks(range(len(row_labels)), row_labels)
  ax.set_xlabel(column_title)
  ax.set_ylabel(row_title)
  ax.set_title(title)
  for (i, j), v in np.ndenumerate(grid):
    ax.text(j, i, "-" if math.isnan(v) else f"{v:.4f}", ha="center", va="center", color="w")
  figure.colorbar(image, ax=ax)
  return figure


def line_plot(curves, xlabel, ylabel, title, references=None):
  """Lines {name: (xs, means, stds or None)}; `references` {name: y} as dashed horizontal lines."""
  figure, ax = _figure()
  for name, (xs, means, stds) in curves.items():
    (line,) = ax.plot(xs, means, marker=".", label=name)
    if stds is not None:
      ax.fill_between(xs, np.subtract(means, stds), np.add(means, stds), alpha=0.2,
                      color=line.get_color())
  for name, y in (references or {}).items():
    ax.axhline(y, linestyle="--", color="gray", label=name)
  from matplotlib.ticker import MaxNLocator
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend()
  return figure


def validation_curve(workdir, metric):
  """{epoch: value} of a validation metric of a finished run: metrics.json's history when it has
  one, else the TensorBoard scalars `valid/<metric>` under <workdir>/logs/validation (the last
  value of an epoch wins, as a resumed run writes its epochs again)."""
  import json
  import glob
  with open(os.path.join(workdir, "metrics.json")) as f:
    history = json.load(f).get("history")
  if isinstance(history, list) and history and "epoch" in history[0]:
    return {h["epoch"]: h[metric] for h in history if metric in h}
  from tfkd import console
  tf = console.import_tensorflow_quietly()
  tf.get_logger().setLevel("ERROR")  # summary_iterator's deprecation notice
  curve = {}
  files = sorted(glob.glob(os.path.join(workdir, "logs", "validation", "events.out.tfevents.*")),
                 key=os.path.getmtime)
  for path in files:
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag in (f"valid/{metric}", metric):
          curve[int(event.step)] = float(tf.make_ndarray(v.tensor)) if v.HasField("tensor") \
              else float(v.simple_value)
  return dict(sorted(curve.items()))
