"""Checks of a split's held-out items against its training items.

A split tfkd makes itself (leave-one-out) holds out items the user has not trained on, two
different ones per user. A split given as files (`--dataset=presplit`, `citeulike-derrd`) is
checked for what breaks evaluation or hides it:

- `overlap`: a validation or test item that is also a training item of that user (the full-ranking
  protocol masks training items, so the held-out item can never be hit);
- `same_item`: a user whose validation and test item are the same (model selection on the test);
- `unseen_user`: a held-out user with no training row (cold start);
- `unseen_item`: a held-out item with no training row (cold start).

Each found is one line that counts the offending rows and shows the first few; `accept` names the
checks a split passes on purpose (`--allow_overlap` accepts the first two, `--allow_cold` the
last two).
"""

from typing import Dict, Iterable, List, Tuple

import numpy as np

from tfkd.errors import DataError

CHECKS = ("overlap", "same_item", "unseen_user", "unseen_item")
FLAG = {"overlap": "--allow_overlap", "same_item": "--allow_overlap",
        "unseen_user": "--allow_cold", "unseen_item": "--allow_cold"}
ACCEPTED_BY_FLAG = {"allow_overlap": ("overlap", "same_item"),
                    "allow_cold": ("unseen_user", "unseen_item")}
LABELS = {"overlap": "held-out rows whose item is a training item of their user",
          "same_item": "users whose validation and test item are the same",
          "unseen_user": "held-out rows of users without training rows",
          "unseen_item": "held-out rows of items without training rows"}
_EXPECTED = {"overlap": "validation and test items the user has not trained on",
             "same_item": "two different held-out items per user",
             "unseen_user": "every held-out user in the training data",
             "unseen_item": "every held-out item in the training data"}
SHOWN = 3  # offending rows a message shows


def _held_out_rows(dataset):
  """(split name, users, items) of every held-out row, validation first."""
  for split in ("valid", "test"):
    items = dataset.heldout_items(split)
    users = np.flatnonzero(items >= 0)
    yield split, users, items[users].astype(np.int64)


def find(dataset) -> Dict[str, Tuple[int, List[str]]]:
  """{check: (offending rows, the first few as 'user U item I in valid')} for every check."""
  train_codes = np.unique(dataset.train_users.astype(np.int64) * dataset.num_items
                          + dataset.train_items)
  user_trained = np.bincount(dataset.train_users, minlength=dataset.num_users) > 0
  item_trained = np.bincount(dataset.train_items, minlength=dataset.num_items) > 0
  found = {name: [] for name in CHECKS}
  for split, users, items in _held_out_rows(dataset):
    code = users * dataset.num_items + items
    found["overlap"].append((split, users, items, np.isin(code, train_codes)))
    found["unseen_user"].append((split, users, items, ~user_trained[users]))
    found["unseen_item"].append((split, users, items, ~item_trained[items]))
  valid, test = dataset.valid_items, dataset.test_items
  same = np.flatnonzero((valid >= 0) & (valid == test))
  found["same_item"].append(("valid and test", same, valid[same].astype(np.int64),
                             np.ones(len(same), bool)))
  return {name: _count(dataset, parts) for name, parts in found.items()}


def _count(dataset, parts):
  count, shown = 0, []
  for split, users, items, bad in parts:
    count += int(bad.sum())
    for u, i in zip(users[bad][:SHOWN], items[bad][:SHOWN]):
      shown.append(f"user {dataset.user_raw_ids[u]} item {dataset.item_raw_ids[i]} in {split}")
  return count, shown[:SHOWN]


def message(name, where, count, shown):
  """The one-line refusal of check `name` failed by `count` rows (`shown` the first few)."""
  more = ", ..." if count > len(shown) else ""
  return (f"{where}: {LABELS[name]}: {count} ({', '.join(shown)}{more}); expected "
          f"{_EXPECTED[name]} ({FLAG[name]} accepts them)")


def enforce(dataset, where, accept: Iterable[str] = ()):
  """Raises DataError for the first check (in CHECKS order) the split fails and `accept` does not
  name; returns `find(dataset)`."""
  accept = set(accept)
  unknown = accept - set(CHECKS)
  if unknown:
    raise ValueError(f"unknown split checks {sorted(unknown)}; expected some of {CHECKS}")
  found = find(dataset)
  for name in CHECKS:
    count, shown = found[name]
    if count and name not in accept:
      raise DataError(message(name, where, count, shown))
  return found
