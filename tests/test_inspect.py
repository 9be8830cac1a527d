"""`python -m tfkd.data.inspect`: its summary of a synthetic dataset against counts made here
from the generator's log with plain Python, without tfkd's recipe, split or check code."""

import collections
import os
import re
import subprocess
import sys

import numpy as np

from conftest import REPO, subprocess_env
from tfkd.data import catalog, inspect, load_dataset, recipes, synthetic

ARGS = ["--dataset=synthetic", "--num_candidates=20", "--min_item_interactions=15"]
QUANTILES = [0, .1, .25, .5, .75, .9, 1]


def expected_counts(min_item_interactions):
  """The summary's numbers, from the raw log: items with >= `min_item_interactions` distinct
  users kept (one pass; no user threshold), then the held-out rows of the split, checked with
  Python sets."""
  log = synthetic.generate(**catalog.SYNTHETIC_DEFAULTS)
  pairs = list(dict.fromkeys(zip(log.users.tolist(), log.items.tolist())))
  item_users = collections.Counter(i for _, i in pairs)
  kept = [(u, i) for u, i in pairs if item_users[i] >= min_item_interactions]
  per_user = collections.Counter(u for u, _ in kept)
  per_item = collections.Counter(i for _, i in kept)
  eligible = sum(c >= 3 for c in per_user.values())
  out = dict(read=(len(log.users), len(set(log.users.tolist())), len(set(log.items.tolist())),
                   len(pairs)),
             prepared=(len(per_user), len(per_item), len(kept)),
             sizes=(len(kept) - 2 * eligible, eligible, eligible, len(per_user) - eligible),
             per_user=np.quantile(list(per_user.values()), QUANTILES),
             per_item=np.quantile(list(per_item.values()), QUANTILES))
  d = load_dataset("synthetic", num_candidates=20,
                   recipe=recipes.Recipe(min_item_interactions=min_item_interactions))
  train = set(zip(d.train_users.tolist(), d.train_items.tolist()))
  trained_items = {i for _, i in train}
  held = [(u, h[u]) for h in (d.valid_items, d.test_items) for u in range(d.num_users)
          if h[u] >= 0]
  out["checks"] = (sum((u, i) in train for u, i in held),
                   sum(v >= 0 and v == t for v, t in zip(d.valid_items, d.test_items)),
                   0, sum(i not in trained_items for _, i in held))
  return out


def numbers(line):
  return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", line.split(None, 1)[1]
                                       .replace(",", ""))]


def test_inspect_prints_the_summary_of_a_synthetic_dataset(tmp_path):
  r = subprocess.run([sys.executable, "-m", "tfkd.data.inspect", *ARGS], cwd=REPO,
                     env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  lines = {}
  for line in r.stdout.splitlines():
    label = line[:10].strip()
    lines.setdefault(label, []).append(line)
  want = expected_counts(15)
  assert numbers(lines["read"][0]) == list(want["read"])
  users, items, n = want["prepared"]
  assert numbers(lines["prepared"][0])[:3] == [users, items, n]
  assert "min_item_interactions 15" in lines["prepared"][0]
  assert abs(numbers(lines["density"][0])[0] - n / (users * items)) < 1e-6
  for label in ("per user", "per item"):
    got = [float(v) for v in re.findall(r"(?:min|%|median|max) ([\d.]+)", lines[label][0])]
    np.testing.assert_allclose(got, want[label.replace(" ", "_")], atol=0.051)
  split = numbers(lines["split"][0])
  assert split[:4] == list(want["sizes"]) and split[4] == 20
  assert [numbers(line)[0] for line in lines["check"]] == list(want["checks"])
  cache = lines["cache"][0].split()[1]
  assert cache.startswith(str(tmp_path / "cache")) and os.path.isfile(cache)
  assert lines["cache"][0].endswith("(written)")


def test_summary_counts_a_split_s_unseen_items():
  """Without a recipe one test item of the random split has no training row."""
  s = inspect.summarize("synthetic", num_candidates=20)
  want = expected_counts(0)
  assert (s["read"], s["prepared"], s["sizes"]) == (want["read"], want["prepared"],
                                                    want["sizes"])
  assert tuple(s["checks"][name][0] for name in inspect.checks.CHECKS) == want["checks"]
  assert want["checks"][3] > 0
  for label in ("per_user", "per_item"):
    np.testing.assert_allclose(list(s[label].values()), want[label])


def test_inspect_needs_no_tensorflow_and_no_workdir(tmp_path):
  code = ("import sys; from absl import flags; from tfkd.data import inspect, flags as f; "
          "fv = flags.FlagValues(); f.define_data_flags(fv); fv(['x', '--dataset=synthetic', "
          "'--num_candidates=5']); inspect.run(fv); "
          "assert 'tensorflow' not in sys.modules and 'trainers' not in sys.modules")
  r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(tmp_path),
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  assert "(written)" in r.stdout
