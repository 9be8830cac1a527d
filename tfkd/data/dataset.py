"""The prepared, split dataset every model, trainer and evaluator works with."""

import dataclasses
import os

import numpy as np

from tfkd import io
from tfkd.data.splits import NO_ITEM, sample_candidates
from tfkd.errors import DataError


@dataclasses.dataclass
class Dataset:
  """A split implicit-feedback dataset.

  Attributes:
    name: catalog name ("citeulike", "synthetic", ...).
    key: a digest of the inputs and recipe; teachers and caches refer to it.
    num_users, num_items: catalog sizes.
    train_users, train_items: int32 [n_train], sorted by user then time.
    valid_items, test_items: int32 [num_users]; NO_ITEM (-1) where a user has none.
    candidates: int32 [num_users, N] sampled-evaluation candidates (N may be 0).
    user_raw_ids, item_raw_ids: raw ids of the source data, index = tfkd id.
  """

  name: str
  key: str
  num_users: int
  num_items: int
  train_users: np.ndarray
  train_items: np.ndarray
  valid_items: np.ndarray
  test_items: np.ndarray
  candidates: np.ndarray
  user_raw_ids: np.ndarray
  item_raw_ids: np.ndarray

  def __post_init__(self):
    self.train_users = np.asarray(self.train_users, np.int32)
    self.train_items = np.asarray(self.train_items, np.int32)
    self.valid_items = np.asarray(self.valid_items, np.int32)
    self.test_items = np.asarray(self.test_items, np.int32)
    self.candidates = np.asarray(self.candidates, np.int32).reshape(self.num_users, -1)
    order = np.lexsort((np.arange(len(self.train_users)), self.train_users))
    if np.any(order != np.arange(len(order))):
      self.train_users, self.train_items = self.train_users[order], self.train_items[order]

  @property
  def num_train(self):
    return len(self.train_users)

  @property
  def num_candidates(self):
    return self.candidates.shape[1]

  def train_csr(self):
    """(indptr [num_users + 1], indices) of each user's training items, in time order."""
    counts = np.bincount(self.train_users, minlength=self.num_users)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), self.train_items

  def heldout_users(self, split):
    """Users with a held-out item in `split` ("valid" or "test")."""
    return np.flatnonzero(self.heldout_items(split) != NO_ITEM).astype(np.int32)

  def heldout_items(self, split):
    if split not in ("valid", "test"):
      raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    return self.valid_items if split == "valid" else self.test_items

  def item_popularity(self):
    return np.bincount(self.train_items, minlength=self.num_items)

  @property
  def num_interactions(self):
    """Training rows plus held-out items."""
    return self.num_train + int((self.valid_items >= 0).sum() + (self.test_items >= 0).sum())

  def summary(self):
    n = self.num_interactions
    return (f"{self.name}: {self.num_users} users, {self.num_items} items, {n} interactions "
            f"({self.num_train} train), {self.num_candidates} candidates per user")

  # -- persistence -------------------------------------------------------------------------

  _ARRAYS = ("train_users", "train_items", "valid_items", "test_items", "candidates",
             "user_raw_ids", "item_raw_ids")

  def save(self, path):
    """Writes an .npz atomically."""
    with io.atomic_path(path) as tmp:
      np.savez(tmp, name=self.name, key=self.key, num_users=self.num_users,
               num_items=self.num_items, **{a: getattr(self, a) for a in self._ARRAYS})

  @classmethod
  def load(cls, path):
    try:
      with np.load(path, allow_pickle=False) as z:
        return cls(name=str(z["name"]), key=str(z["key"]), num_users=int(z["num_users"]),
                   num_items=int(z["num_items"]), **{a: z[a] for a in cls._ARRAYS})
    except (OSError, KeyError, ValueError) as e:
      raise DataError(f"{path}: not a readable tfkd dataset cache ({e})") from None


def validate(dataset: Dataset, source=""):
  """Checks ids against the catalog sizes; raises DataError naming the problem."""
  where = source or dataset.name
  for what, ids, size in (("user", dataset.train_users, dataset.num_users),
                          ("item", dataset.train_items, dataset.num_items),
                          ("valid item", dataset.valid_items, dataset.num_items),
                          ("test item", dataset.test_items, dataset.num_items)):
    if len(ids) and (ids.max() >= size or ids.min() < NO_ITEM):
      bad = ids[(ids >= size) | (ids < NO_ITEM)][0]
      raise DataError(f"{where}: {what} id {bad} outside the catalog of {size}")
  if len(np.unique(dataset.train_users)) == 0:
    raise DataError(f"{where}: no training interactions")


def add_candidates(dataset: Dataset, split_seed=0, num_candidates=499) -> Dataset:
  """Sets `dataset.candidates`: `num_candidates` sampled-evaluation candidates per user, drawn
  with seed `split_seed + 1` among the items the user never interacted with."""
  valid, test = dataset.valid_items, dataset.test_items
  seen_u = np.concatenate([dataset.train_users, np.flatnonzero(valid >= 0),
                           np.flatnonzero(test >= 0)])
  seen_i = np.concatenate([dataset.train_items, valid[valid >= 0], test[test >= 0]])
  order = np.argsort(seen_u, kind="stable")
  indptr = np.concatenate([[0], np.cumsum(np.bincount(seen_u, minlength=dataset.num_users))])
  dataset.candidates = sample_candidates(dataset.num_items, indptr, seen_i[order],
                                         num_candidates, seed=split_seed + 1)
  return dataset


def default_cache_dir():
  """$TFKD_CACHE_DIR, else $XDG_CACHE_HOME/tfkd, else ~/.cache/tfkd."""
  if os.environ.get("TFKD_CACHE_DIR"):
    return os.environ["TFKD_CACHE_DIR"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "tfkd")
