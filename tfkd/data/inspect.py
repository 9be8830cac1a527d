"""What tfkd makes of a dataset, without training anything.

  python -m tfkd.data.inspect --dataset=presplit --train_file=train.csv --valid_file=valid.csv \
      --test_file=test.csv --data_header

Takes the trainers' dataset flags (`tfkd.data.flags`; no --workdir) and prints users, items and
interactions as read and after the recipe, the density, per-user and per-item count quantiles,
the split's sizes and its checks (`tfkd.data.checks`), and the prepared dataset's cache entry. It
prepares and caches the dataset as a trainer would (the trainer then starts from the cache), and
refuses what a trainer refuses, in the same one line (`tfkd: error: ...`, exit status 1).
"""

import os
import sys

import numpy as np
from absl import app, flags

from tfkd.data import catalog, checks, recipes
from tfkd.data import flags as data_flags
from tfkd.errors import TfkdError

QUANTILES = ((0.0, "min"), (0.1, "10%"), (0.25, "25%"), (0.5, "median"), (0.75, "75%"),
             (0.9, "90%"), (1.0, "max"))


def raw_counts(logs):
  """(rows, users, items, distinct pairs) of the logs as read, before any recipe."""
  users = np.concatenate([log.users for log in logs])
  items = np.concatenate([log.items for log in logs])
  u, user_raw = recipes.first_appearance_codes(users)
  i, item_raw = recipes.first_appearance_codes(items)
  pairs = len(np.unique(u * len(item_raw) + i))
  return len(users), len(user_raw), len(item_raw), pairs


def count_quantiles(counts):
  """{label: value} of the quantiles of `counts` (numpy's linear interpolation)."""
  values = np.quantile(np.asarray(counts, np.float64), [q for q, _ in QUANTILES])
  return {label: float(v) for (_, label), v in zip(QUANTILES, values)}


def summarize(name, accept=(), **kwargs):
  """Loads (and caches) the dataset `load_dataset(name, accept=accept, **kwargs)` loads; returns
  its summary as a dict of numbers."""
  p = catalog.plan(name, **kwargs)
  logs = catalog.read_raw(p)
  cached = p.cache_path if os.path.isfile(p.cache_path) else None
  dataset = catalog.load_planned(p, accept, logs=logs)
  held = {split: dataset.heldout_users(split) for split in ("valid", "test")}
  users = np.concatenate([dataset.train_users, held["valid"], held["test"]])
  items = np.concatenate([dataset.train_items, dataset.valid_items[held["valid"]],
                          dataset.test_items[held["test"]]])
  return dict(
      name=name, description=p.spec.description, split=p.spec.split,
      recipe={k: v for k, v in p.spec.recipe.to_dict().items() if v not in (None, 0, False)},
      read=raw_counts(logs),
      prepared=(dataset.num_users, dataset.num_items, dataset.num_interactions),
      density=dataset.num_interactions / (dataset.num_users * dataset.num_items),
      per_user=count_quantiles(np.bincount(users, minlength=dataset.num_users)),
      per_item=count_quantiles(np.bincount(items, minlength=dataset.num_items)),
      sizes=(dataset.num_train, len(held["valid"]), len(held["test"]),
             int(np.sum((dataset.valid_items < 0) & (dataset.test_items < 0)))),
      candidates=dataset.num_candidates, checks=checks.find(dataset),
      by_spec=p.spec.accept, cache=p.cache_path, cached=bool(cached))


def _quantile_line(q, what):
  return ", ".join(f"{label} {q[label]:g}" for _, label in QUANTILES) + f" {what}"


def _check_line(name, s):
  count, shown = s["checks"][name]
  line = f"{name}: {checks.LABELS[name]}: {count:,}"
  if count:
    line += f" ({', '.join(shown)}{', ...' if count > len(shown) else ''})"
    if s["split"] != "given":
      line += ", a split tfkd made itself: not refused"
    elif name in s["by_spec"]:
      line += ", accepted: the catalog's split as published"
    else:
      line += f", accepted by {checks.FLAG[name]}"
  return line


def format_summary(s) -> str:
  """The printed form of `summarize(...)`: one `label  text` line per fact."""
  rows, users, items, pairs = s["read"]
  n_users, n_items, n = s["prepared"]
  train, valid, test, none = s["sizes"]
  recipe = ", ".join(f"{k} {v}" for k, v in sorted(s["recipe"].items())) or "none"
  lines = [
      ("dataset", f"{s['name']}: {s['description'] or 'generated'}"),
      ("read", f"{rows:,} rows: {users:,} users, {items:,} items, {pairs:,} distinct pairs"),
      ("prepared", f"{n_users:,} users, {n_items:,} items, {n:,} interactions (recipe: "
                   f"{recipe})"),
      ("density", f"{s['density']:.6f} (interactions / users x items)"),
      ("per user", _quantile_line(s["per_user"], "interactions")),
      ("per item", _quantile_line(s["per_item"], "interactions")),
      ("split", f"{s['split']}: {train:,} train rows, {valid:,} valid, {test:,} test; {none:,} "
                f"users without a held-out item; {s['candidates']} candidates per user"),
  ]
  lines += [("check", _check_line(name, s)) for name in checks.CHECKS]
  lines.append(("cache", f"{s['cache']} ({'read' if s['cached'] else 'written'})"))
  return "\n".join(f"{label:<10}{text}" for label, text in lines)


def run(fv=flags.FLAGS):
  """Prints the summary of the dataset the parsed data flags `fv` name; a TfkdError becomes
  'tfkd: error: <message>' on stderr and exit status 1, as in the trainers."""
  try:
    print(format_summary(summarize(**data_flags.load_kwargs(fv))))
  except TfkdError as e:
    print(f"tfkd: error: {e}", file=sys.stderr)
    sys.exit(1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  run(flags.FLAGS)


if __name__ == "__main__":
  data_flags.define_data_flags(flags.FLAGS)
  app.run(main)
