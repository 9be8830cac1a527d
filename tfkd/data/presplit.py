"""Pre-split datasets: train, validation and test given as three files.

Two layouts: the catalog's indexed files (`user<TAB>item` with a header, ids already 0-based
indices, as `citeulike-derrd` is published) and the user's own delimited files
(`--dataset=presplit`, the `--dataset=file` column and separator options), whose ids may be any
strings: they are indexed by order of first appearance over the train, validation and test files
in that order, and kept as the dataset's raw ids (exports serve them).

Training rows keep their file order (their timestamp order when the files have a timestamp
column); a (user, item) pair repeated in the training file counts once. A held-out file holds at
most one item per user; a user without a row there has no held-out item.
"""

import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np

from tfkd.data import readers, recipes, splits
from tfkd.data.readers import RawLog
from tfkd.errors import DataError


@dataclasses.dataclass
class Split:
  """A given split as index arrays, with the raw ids (index = tfkd id)."""

  num_users: int
  num_items: int
  train_users: np.ndarray  # [n] int64
  train_items: np.ndarray  # [n] int64
  valid_items: np.ndarray  # [num_users] int64, NO_ITEM where none
  test_items: np.ndarray  # [num_users] int64
  user_raw_ids: np.ndarray  # [num_users] str
  item_raw_ids: np.ndarray  # [num_items] str

  @property
  def num_interactions(self):
    return len(self.train_users) + int((self.valid_items >= 0).sum() +
                                       (self.test_items >= 0).sum())


def read_indexed(paths: Sequence[str], sizes: Optional[Tuple[int, int]] = None) -> List[RawLog]:
  """The catalog layout; ids at or beyond `sizes` (users, items) are refused with file and line."""
  num_users, num_items = sizes if sizes else (None, None)
  logs = []
  for path in paths:
    users, items, _ = readers.read_indexed_pairs(path, num_users, num_items)
    logs.append(RawLog(users.astype(str), items.astype(str), source=path))
  return logs


def read_files(paths: Sequence[str], options: dict) -> List[RawLog]:
  """The user's own files, each read by `readers.read_delimited(path, **options)`."""
  return [readers.read_delimited(path, **options) for path in paths]


def _codes(logs, attr, indexed):
  """Per log, the int64 indices of its `attr` ids; and the raw id of every index."""
  values = [getattr(log, attr) for log in logs]
  if indexed:
    codes = [v.astype(np.int64) for v in values]
    size = int(max(c.max() for c in codes)) + 1
    return codes, np.arange(size).astype(str)
  codes, raw = recipes.first_appearance_codes(np.concatenate(values))
  bounds = np.cumsum([len(v) for v in values])[:-1]
  return np.split(codes, bounds), raw


def _train(log, users, items, num_items):
  """Training pairs in time (else file) order, each pair once."""
  order = np.arange(len(users))
  if log.timestamps is not None:
    order = np.lexsort((order, log.timestamps))
  users, items = users[order], items[order]
  _, first = np.unique(users * num_items + items, return_index=True)
  keep = np.sort(first)
  return users[keep], items[keep]


def _heldout(log, users, items, num_users, user_raw):
  counts = np.bincount(users, minlength=num_users)
  repeated = np.flatnonzero(counts > 1)
  if len(repeated):
    shown = ", ".join(f"user {user_raw[u]}" for u in repeated[:3])
    raise DataError(f"{log.source}: users with more than one row: {len(repeated)} ({shown}"
                    f"{', ...' if len(repeated) > 3 else ''}); expected one held-out item per "
                    "user")
  heldout = np.full(num_users, splits.NO_ITEM, np.int64)
  heldout[users] = items
  return heldout


def build(logs: Sequence[RawLog], indexed: bool) -> Split:
  """A Split from the (train, valid, test) logs; `indexed`: ids are already indices."""
  user_codes, user_raw = _codes(logs, "users", indexed)
  item_codes, item_raw = _codes(logs, "items", indexed)
  num_users, num_items = len(user_raw), len(item_raw)
  train_u, train_i = _train(logs[0], user_codes[0], item_codes[0], num_items)
  valid, test = (_heldout(logs[k], user_codes[k], item_codes[k], num_users, user_raw)
                 for k in (1, 2))
  return Split(num_users, num_items, train_u, train_i, valid, test, user_raw, item_raw)


def check_sizes(split: Split, expected, name, where):
  """Refuses a copy of a catalog split whose sizes are not the catalog's."""
  got = (split.num_users, split.num_items, split.num_interactions)
  if tuple(expected) != got:
    raise DataError(
        f"dataset {name!r}: {where} hold {got[0]} users, {got[1]} items, {got[2]} interactions; "
        f"expected the catalog's {expected[0]}, {expected[1]}, {expected[2]} (another split: "
        "--dataset=presplit --train_file=... --valid_file=... --test_file=...)")
