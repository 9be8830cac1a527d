"""Preparation recipes: threshold, filter, de-duplicate and re-index a raw interaction log."""

import dataclasses
from typing import Optional

import numpy as np

from tfkd.data.readers import RawLog
from tfkd.errors import DataError


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How a raw log becomes implicit feedback.

  Attributes:
    min_rating: keep rows with rating >= this (None keeps every row).
    min_user_interactions: drop users with fewer distinct items.
    min_item_interactions: drop items with fewer distinct users.
    kcore: repeat the two filters until nothing changes (else one pass: users, then items).
  Duplicate (user, item) pairs are always collapsed to their first row (earliest timestamp when
  timestamps exist). Ids are re-indexed by order of first appearance in the filtered log.
  """

  min_rating: Optional[float] = None
  min_user_interactions: int = 0
  min_item_interactions: int = 0
  kcore: bool = False

  def to_dict(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Prepared:
  """Re-indexed interactions: 0-based ids and the maps back to raw ids."""

  users: np.ndarray  # [n] int32
  items: np.ndarray  # [n] int32
  timestamps: Optional[np.ndarray]  # [n] float64 or None
  user_raw_ids: np.ndarray  # [num_users] str
  item_raw_ids: np.ndarray  # [num_items] str

  @property
  def num_users(self):
    return len(self.user_raw_ids)

  @property
  def num_items(self):
    return len(self.item_raw_ids)


def first_appearance_codes(values):
  """Codes by order of first appearance, and the unique values in that order."""
  uniques, first, inverse = np.unique(values, return_index=True, return_inverse=True)
  order = np.argsort(first, kind="stable")
  rank = np.empty_like(order)
  rank[order] = np.arange(len(order))
  return rank[inverse].astype(np.int64), uniques[order]


def prepare(log: RawLog, recipe: Recipe) -> Prepared:
  """Applies `recipe` to `log`; refuses a recipe that leaves nothing."""
  keep = np.ones(len(log), dtype=bool)
  if recipe.min_rating is not None:
    if log.ratings is None:
      raise DataError(f"{log.source}: recipe has min_rating but the file has no rating column")
    keep &= log.ratings >= recipe.min_rating
  users, items = log.users[keep], log.items[keep]
  stamps = log.timestamps[keep] if log.timestamps is not None else None

  # Collapse duplicate pairs, keeping the earliest timestamp (file order when there is none).
  u_code, _ = first_appearance_codes(users)
  i_code, _ = first_appearance_codes(items)
  order = np.arange(len(users))
  if stamps is not None:
    order = np.lexsort((order, stamps))
  pair = u_code[order] * (int(i_code.max(initial=0)) + 1) + i_code[order]
  _, first = np.unique(pair, return_index=True)
  rows = np.sort(order[first])  # back to file order
  users, items = users[rows], items[rows]
  stamps = stamps[rows] if stamps is not None else None

  while True:
    before = len(users)
    for which, threshold in ((0, recipe.min_user_interactions), (1, recipe.min_item_interactions)):
      if threshold > 1 and len(users):
        key = users if which == 0 else items
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        mask = counts[inverse] >= threshold
        users, items = users[mask], items[mask]
        stamps = stamps[mask] if stamps is not None else None
    if not recipe.kcore or len(users) == before:
      break
  if len(users) == 0:
    raise DataError(f"{log.source}: no interactions left after the recipe {recipe.to_dict()}")
  u, user_raw = first_appearance_codes(users)
  i, item_raw = first_appearance_codes(items)
  return Prepared(u.astype(np.int32), i.astype(np.int32), stamps, user_raw, item_raw)
