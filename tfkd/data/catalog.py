"""Named datasets: where their files come from, how they are prepared, and the prepared cache.

Every catalog dataset downloads its source files from a commit-pinned URL, md5-checked, unless a
data directory holds them (`tfkd.data.sources`: lookup order, one place per dataset, mirrors).

Prepared datasets are cached as `.npz` under `<cache dir>/prepared/<name>-<key>.npz`, with the key
derived from the source files' checksums, the recipe, the split and the candidate settings.
"""

import dataclasses
import hashlib
import json
import os
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from absl import logging

from tfkd.data import readers, recipes, splits, synthetic
from tfkd.data.dataset import Dataset, default_cache_dir, validate
from tfkd.data.sources import DATA_DIR_ENV, SourceFile, resolve_files
from tfkd.errors import DataError

CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A catalog entry.

  Attributes:
    name: the catalog key.
    files: source files; for `reader="presplit"` exactly train, valid and test.
    reader: "citeulike", "movielens", "csv" (user,item,rating,timestamp), "delimited" (see
      `reader_options`) or "presplit".
    reader_options: keyword arguments of `readers.read_delimited` for reader "delimited".
    recipe: how the raw log is prepared.
    split: "random" or "timestamp" leave-one-out ("given" for pre-split data).
    expected: (users, items, interactions) a faithful copy must give, or None.
    description: one line for `--help` and the README.
  """

  name: str
  files: Tuple[SourceFile, ...]
  reader: str
  recipe: recipes.Recipe = recipes.Recipe()
  split: str = "random"
  expected: Optional[Tuple[int, int, int]] = None
  description: str = ""
  reader_options: Tuple[Tuple[str, object], ...] = ()


_GITHUB = "https://raw.githubusercontent.com"
CITEULIKE_FILE = SourceFile(
    "citeulike/users.dat",
    f"{_GITHUB}/js05212/citeulike-t/4f103c6ea0fe407b23be230837b65517e613c34a/users.dat",
    "4e6b896cc923445803c1b8f12eb1c3bd")

CATALOG: Dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec):
  if spec.name in CATALOG:
    raise ValueError(f"dataset {spec.name!r} is already registered")
  CATALOG[spec.name] = spec
  return spec


register(DatasetSpec(
    "citeulike", (CITEULIKE_FILE,), "citeulike",
    recipes.Recipe(min_user_interactions=5), split="random", expected=(5219, 25181, 125580),
    description="CiteULike-t users.dat, users with >= 5 items, seeded random leave-one-out"))
_DERRD = f"{_GITHUB}/SeongKu-Kang/DE-RRD_CIKM20/97b6bf6fa70caecb26f22b539763f476a1843949/" \
         "Dataset/citeULike/LOO"
register(DatasetSpec(
    "citeulike-derrd",
    (SourceFile("citeulike/derrd_loo/train.tsv", f"{_DERRD}/train_mat_0",
                "8a25a15432a85fa85abd04c2c900951a", "derrd-pairs",
                "b27b651cf701087aa9c83f408be4c0bb"),
     SourceFile("citeulike/derrd_loo/valid.tsv", f"{_DERRD}/valid_sample_0",
                "d5c33e39d65f889223fa5c71fbbef89f", "derrd-heldout",
                "ea21737454287dcf935e15e9fc81f35a"),
     SourceFile("citeulike/derrd_loo/test.tsv", f"{_DERRD}/test_sample_0",
                "886211c52af9fca426409fd547215f9a", "derrd-heldout",
                "7e2733a9f3ff9cb0bcba963118d8b790")),
    "presplit", split="given", expected=(5219, 25181, 125580),
    description="CiteULike with the exact DE-RRD/DCD leave-one-out split (read as given)"))
register(DatasetSpec(
    "ml-100k",
    (SourceFile("ml-100k/u.data", "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                "6e47046882bad158b0efbb84cd5cb987", "zip:ml-100k/u.data",
                "0e33842e24a9c977be4e0107933c0723"),),
    "movielens", recipes.Recipe(), split="timestamp", expected=(943, 1682, 100000),
    description="MovieLens-100K u.data, every rating as feedback, leave-last-out by timestamp"))
register(DatasetSpec(
    "amazon-music",
    (SourceFile("amazon-music/amusic.rating",
                f"{_GITHUB}/jin530/LOCA/da7ca41726d7d0a7e160f3e532fd2760cf5ca69b/"
                "data/recsys_data/amusic/amusic.rating",
                "8b42688f54ae61dc03105161e2047701"),),
    "csv", recipes.Recipe(min_user_interactions=10), split="timestamp",
    description="Amazon Digital Music ratings, users with >= 10 items, leave-last-out"))
SYNTHETIC = "synthetic"
SYNTHETIC_DEFAULTS = dict(num_users=200, num_items=300, interactions_per_user=20, dim=8,
                          zipf=0.8, temperature=0.5, seed=0)


FILE = "file"


def names():
  return sorted(CATALOG) + [SYNTHETIC, FILE]


def file_spec(path, columns=("user", "item", "rating", "timestamp"), sep=",", header=False,
              integer_ids=False, split="random"):
  """A spec for the user's own delimited file (`--dataset=file --data_file=...`)."""
  return DatasetSpec(FILE, (SourceFile(os.path.abspath(path), None, None),), "delimited",
                     split=split, reader_options=(("columns", tuple(columns) if columns else None),
                                                  ("sep", sep), ("header", bool(header)),
                                                  ("integer_ids", bool(integer_ids))),
                     description=f"delimited file {path}")




_READERS: Dict[str, Callable] = {
    "citeulike": readers.read_citeulike,
    "movielens": readers.read_movielens,
    "csv": lambda path: readers.read_delimited(
        path, columns=("user", "item", "rating", "timestamp"), sep=","),
}


def _cache_key(parts):
  blob = json.dumps(dict(parts, version=CACHE_VERSION), sort_keys=True).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def load_dataset(name, data_dir=None, split_seed=0, num_candidates=499, split=None,
                 recipe: Optional[recipes.Recipe] = None, synthetic_params=None,
                 cache_dir=None, use_cache=True, spec: Optional[DatasetSpec] = None) -> Dataset:
  """Loads a catalog dataset, prepared, split, with sampled-evaluation candidates.

  Args:
    name: a catalog name (see `names()`).
    data_dir: first directory to look for source files in.
    split_seed: seed of the random leave-one-out and of the candidates.
    num_candidates: unobserved items drawn per user for the sampled protocol.
    split: override the catalog's split mode ("random" or "timestamp").
    recipe: override the catalog's recipe.
    synthetic_params: overrides of `SYNTHETIC_DEFAULTS` for `name="synthetic"`.
    cache_dir: where prepared datasets are cached (default: `default_cache_dir()`).
    use_cache: read and write the prepared cache.
    spec: a spec not in the catalog (e.g. `file_spec(...)` for `name="file"`).
  """
  if name == SYNTHETIC:
    params = dict(SYNTHETIC_DEFAULTS, **(synthetic_params or {}))
    spec = DatasetSpec(SYNTHETIC, (), "synthetic", recipe or recipes.Recipe(),
                       split or "random")
    digests = {"params": params}
  elif name in CATALOG or spec is not None:
    spec = spec or CATALOG[name]
    if recipe is not None:
      spec = dataclasses.replace(spec, recipe=recipe)
    if split is not None and spec.split != "given":
      spec = dataclasses.replace(spec, split=split)
    paths, digests = resolve_files(spec.files, data_dir, name)
  else:
    raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(names())}")

  key = _cache_key(dict(name=name, inputs=digests, recipe=spec.recipe.to_dict(),
                        reader=spec.reader, reader_options=repr(spec.reader_options),
                        split=spec.split, split_seed=split_seed, num_candidates=num_candidates))
  cache_path = os.path.join(cache_dir or default_cache_dir(), "prepared", f"{name}-{key}.npz")
  if use_cache and os.path.isfile(cache_path):
    try:
      return Dataset.load(cache_path)
    except DataError as e:
      logging.warning("ignoring unreadable cache entry: %s", e)

  if spec.reader == "synthetic":
    dataset = _from_log(name, key, synthetic.generate(**params), spec, split_seed, num_candidates)
  elif spec.reader == "presplit":
    dataset = _from_presplit(name, key, paths, spec, split_seed, num_candidates)
  else:
    if spec.reader == "delimited":
      log = readers.read_delimited(paths[0], **dict(spec.reader_options))
    else:
      log = _READERS[spec.reader](paths[0])
    dataset = _from_log(name, key, log, spec, split_seed, num_candidates)
  if spec.expected and all(digests.get(f.relpath) == f.md5 for f in spec.files if f.md5):
    _check_expected(dataset, spec)
  if use_cache:
    dataset.save(cache_path)
  return dataset


def _check_expected(dataset, spec):
  users, items, interactions = spec.expected
  n = dataset.num_train + int((dataset.valid_items >= 0).sum() + (dataset.test_items >= 0).sum())
  got = (dataset.num_users, dataset.num_items, n)
  if spec.name in CATALOG and spec.recipe == CATALOG[spec.name].recipe and got != (users, items, interactions):
    raise DataError(f"dataset {spec.name!r}: prepared {got} users/items/interactions, the "
                    f"catalog expects {spec.expected}")


def _with_candidates(name, key, num_users, num_items, train_u, train_i, valid, test,
                     user_raw, item_raw, split_seed, num_candidates):
  seen_u = np.concatenate([train_u, np.flatnonzero(valid >= 0), np.flatnonzero(test >= 0)])
  seen_i = np.concatenate([train_i, valid[valid >= 0], test[test >= 0]])
  order = np.argsort(seen_u, kind="stable")
  indptr = np.concatenate([[0], np.cumsum(np.bincount(seen_u, minlength=num_users))])
  candidates = splits.sample_candidates(num_items, indptr, seen_i[order], num_candidates,
                                        seed=split_seed + 1)
  dataset = Dataset(name, key, num_users, num_items, train_u, train_i, valid, test, candidates,
                    np.asarray(user_raw, str), np.asarray(item_raw, str))
  validate(dataset)
  return dataset


def _from_log(name, key, log, spec, split_seed, num_candidates):
  prepared = recipes.prepare(log, spec.recipe)
  train_u, train_i, valid, test = splits.leave_one_out(
      prepared.users, prepared.items, prepared.num_users, prepared.timestamps, by=spec.split,
      seed=split_seed)
  return _with_candidates(name, key, prepared.num_users, prepared.num_items, train_u, train_i,
                          valid, test, prepared.user_raw_ids, prepared.item_raw_ids, split_seed,
                          num_candidates)


def _from_presplit(name, key, paths, spec, split_seed, num_candidates):
  num_users, num_items = (spec.expected[:2] if spec.expected else (None, None))
  parts = [readers.read_indexed_pairs(p, num_users, num_items) for p in paths]
  if num_users is None:
    num_users = int(max(p[0].max() for p in parts)) + 1
    num_items = int(max(p[1].max() for p in parts)) + 1
  (train_u, train_i, _), heldout = parts[0], []
  for path, (u, i, lines) in zip(paths[1:], parts[1:]):
    items = np.full(num_users, splits.NO_ITEM, np.int64)
    _, first, counts = np.unique(u, return_index=True, return_counts=True)
    if np.any(counts > 1):
      dup = np.sort(first[counts > 1])[0]
      raise DataError(f"{path}:{lines[dup]}: user {u[dup]} already has a held-out item; "
                      "expected one item per user")
    items[u] = i
    heldout.append(items)
  ids = [str(x) for x in range(num_users)], [str(x) for x in range(num_items)]
  return _with_candidates(name, key, num_users, num_items, train_u, train_i, heldout[0],
                          heldout[1], ids[0], ids[1], split_seed, num_candidates)
