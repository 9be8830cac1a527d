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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from tfkd.data import checks, presplit, readers, recipes, splits, synthetic
from tfkd.data.dataset import Dataset, add_candidates, default_cache_dir, validate
from tfkd.data.sources import DATA_DIR_ENV, SourceFile, resolve_files  # noqa: F401 (DATA_DIR_ENV)
from tfkd.errors import ConfigError, DataError

CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A catalog entry.

  Attributes:
    name: the catalog key.
    files: source files; for a given split exactly train, valid and test.
    reader: "citeulike", "movielens", "csv" (user,item,rating,timestamp), "delimited", "presplit"
      (indexed files, `presplit.read_indexed`) or "presplit-files" (the user's delimited files).
    reader_options: `readers.read_delimited`'s keyword arguments ("delimited", "presplit-files").
    recipe: how the raw log is prepared.
    split: "random" or "timestamp" leave-one-out ("given" for pre-split data).
    expected: (users, items, interactions) a faithful copy must give, or None; a pre-split
      dataset's files must give them whatever their md5.
    description: one line for `--help` and the README.
    accept: the `checks.CHECKS` its given split fails by design.
  """

  name: str
  files: Tuple[SourceFile, ...]
  reader: str
  recipe: recipes.Recipe = recipes.Recipe()
  split: str = "random"
  expected: Optional[Tuple[int, int, int]] = None
  description: str = ""
  reader_options: Tuple[Tuple[str, object], ...] = ()
  accept: Tuple[str, ...] = ()


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
    description="CiteULike with the exact DE-RRD/DCD leave-one-out split (read as given)",
    # As published, 257 validation and 258 test items have no training row.
    accept=("unseen_item",)))
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
PRESPLIT = "presplit"


def names():
  return sorted(CATALOG) + [SYNTHETIC, FILE, PRESPLIT]


def _delimited(columns, sep, header, integer_ids):
  return (("columns", tuple(columns) if columns else None), ("sep", sep),
          ("header", bool(header)), ("integer_ids", bool(integer_ids)))


def file_spec(path, columns=("user", "item", "rating", "timestamp"), sep=",", header=False,
              integer_ids=False, split="random"):
  """A spec for the user's own delimited file (`--dataset=file --data_file=...`)."""
  return DatasetSpec(FILE, (SourceFile(os.path.abspath(path), None, None),), "delimited",
                     split=split, reader_options=_delimited(columns, sep, header, integer_ids),
                     description=f"delimited file {path}")


def presplit_spec(train, valid, test, columns=("user", "item", "rating", "timestamp"), sep=",",
                  header=False):
  """A spec for the user's own split (`--dataset=presplit --train_file=... --valid_file=...
  --test_file=...`): three delimited files read like `file_spec`'s, ids any strings."""
  files = tuple(SourceFile(os.path.abspath(p), None, None) for p in (train, valid, test))
  return DatasetSpec(PRESPLIT, files, "presplit-files", split="given",
                     reader_options=_delimited(columns, sep, header, False),
                     description=f"pre-split files {train}, {valid}, {test}")


_READERS: Dict[str, Callable] = {
    "citeulike": readers.read_citeulike,
    "movielens": readers.read_movielens,
    "csv": lambda path: readers.read_delimited(
        path, columns=("user", "item", "rating", "timestamp"), sep=","),
}


def _cache_key(parts):
  blob = json.dumps(dict(parts, version=CACHE_VERSION), sort_keys=True).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Plan:
  """A dataset to load: its spec, its source files and their md5s, and its prepared cache."""

  name: str
  spec: DatasetSpec
  paths: Tuple[str, ...]
  digests: dict
  key: str
  cache_path: str
  split_seed: int
  num_candidates: int
  synthetic_params: Optional[dict] = None


def plan(name, data_dir=None, split_seed=0, num_candidates=499, split=None,
         recipe: Optional[recipes.Recipe] = None, synthetic_params=None, cache_dir=None,
         spec: Optional[DatasetSpec] = None) -> Plan:
  """Resolves (downloading what is missing) a dataset's files and its cache entry; the arguments
  are `load_dataset`'s."""
  params = None
  if name == SYNTHETIC:
    params = dict(SYNTHETIC_DEFAULTS, **(synthetic_params or {}))
    spec = DatasetSpec(SYNTHETIC, (), "synthetic", recipe or recipes.Recipe(), split or "random")
    paths, digests = (), {"params": params}
  elif name in CATALOG or spec is not None:
    spec = spec or CATALOG[name]
    if spec.split == "given" and (recipe is not None or split is not None):
      raise ConfigError(f"dataset {name!r} is split as given by its files: a recipe or a split "
                        "mode does not apply to it")
    if recipe is not None:
      spec = dataclasses.replace(spec, recipe=recipe)
    if split is not None:
      spec = dataclasses.replace(spec, split=split)
    for f in spec.files:
      if not f.url and os.path.isabs(f.relpath) and not os.path.isfile(f.relpath):
        raise DataError(f"{f.relpath}: file not found")
    paths, digests = resolve_files(spec.files, data_dir, name)
  elif name in (FILE, PRESPLIT):
    raise DataError(f"dataset {name!r} needs its files: spec={name}_spec(...)")
  else:
    raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(names())}")
  key = _cache_key(dict(name=name, inputs=digests, recipe=spec.recipe.to_dict(),
                        reader=spec.reader, reader_options=repr(spec.reader_options),
                        split=spec.split, split_seed=split_seed, num_candidates=num_candidates))
  cache_path = os.path.join(cache_dir or default_cache_dir(), "prepared", f"{name}-{key}.npz")
  return Plan(name, spec, tuple(paths), digests, key, cache_path, split_seed, num_candidates,
              params)


def read_raw(p: Plan) -> List[readers.RawLog]:
  """The plan's data as read, before any recipe: one log, or (train, valid, test) logs."""
  spec = p.spec
  if spec.reader == "synthetic":
    return [synthetic.generate(**p.synthetic_params)]
  if spec.reader == "presplit":
    return presplit.read_indexed(p.paths, spec.expected[:2] if spec.expected else None)
  if spec.reader == "presplit-files":
    return presplit.read_files(p.paths, dict(spec.reader_options))
  if spec.reader == "delimited":
    return [readers.read_delimited(p.paths[0], **dict(spec.reader_options))]
  return [_READERS[spec.reader](p.paths[0])]


def build(p: Plan, logs: Sequence[readers.RawLog], accept: Sequence[str] = ()) -> Dataset:
  """The prepared, split dataset from `read_raw(p)`: a given split checked (`check_split`)
  before its candidates are drawn; a faithful catalog copy's sizes checked."""
  spec = p.spec
  if spec.split == "given":
    s = presplit.build(logs, indexed=spec.reader == "presplit")
    if spec.expected:
      presplit.check_sizes(s, spec.expected, p.name, ", ".join(p.paths))
    arrays = (s.num_users, s.num_items, s.train_users, s.train_items, s.valid_items,
              s.test_items, s.user_raw_ids, s.item_raw_ids)
  else:
    prepared = recipes.prepare(logs[0], spec.recipe)
    arrays = (prepared.num_users, prepared.num_items, *splits.leave_one_out(
        prepared.users, prepared.items, prepared.num_users, prepared.timestamps,
        by=spec.split, seed=p.split_seed), prepared.user_raw_ids, prepared.item_raw_ids)
  dataset = Dataset(p.name, p.key, *arrays[:6], np.zeros((arrays[0], 0), np.int32),
                    np.asarray(arrays[6], str), np.asarray(arrays[7], str))
  validate(dataset)
  check_split(p, dataset, accept)
  if spec.expected and spec.split != "given" and all(
      p.digests.get(f.relpath) == f.md5 for f in spec.files if f.md5):
    _check_expected(dataset, spec)
  return add_candidates(dataset, p.split_seed, p.num_candidates)


def load_dataset(name, data_dir=None, split_seed=0, num_candidates=499, split=None,
                 recipe: Optional[recipes.Recipe] = None, synthetic_params=None,
                 cache_dir=None, use_cache=True, spec: Optional[DatasetSpec] = None,
                 accept: Sequence[str] = ()) -> Dataset:
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
    spec: a spec not in the catalog (`file_spec(...)` for "file", `presplit_spec(...)`).
    accept: `checks.CHECKS` a given split may fail (besides those its spec accepts).
  """
  p = plan(name, data_dir, split_seed, num_candidates, split, recipe, synthetic_params,
           cache_dir, spec)
  return load_planned(p, accept, use_cache)


def load_planned(p: Plan, accept: Sequence[str] = (), use_cache=True,
                 logs: Optional[Sequence[readers.RawLog]] = None) -> Dataset:
  """`load_dataset` of a plan: from its cache entry, else from `logs` (read when None), checked,
  then cached; nothing is cached when a check fails."""
  dataset = None
  if use_cache and os.path.isfile(p.cache_path):
    try:
      dataset = Dataset.load(p.cache_path)
    except DataError as e:
      logging.warning("ignoring unreadable cache entry: %s", e)
  if dataset is not None:
    check_split(p, dataset, accept)
    return dataset
  dataset = build(p, read_raw(p) if logs is None else logs, accept)
  if use_cache:
    dataset.save(p.cache_path)
  return dataset


def check_split(p: Plan, dataset: Dataset, accept: Sequence[str] = ()):
  """`checks.enforce` on a given split (naming its held-out files); a split tfkd made itself
  needs none."""
  if p.spec.split == "given":
    checks.enforce(dataset, ", ".join(p.paths[1:]), set(accept) | set(p.spec.accept))


def _check_expected(dataset, spec):
  got = (dataset.num_users, dataset.num_items, dataset.num_interactions)
  if spec.name in CATALOG and spec.recipe == CATALOG[spec.name].recipe and got != spec.expected:
    raise DataError(f"dataset {spec.name!r}: prepared {got} users/items/interactions, the "
                    f"catalog expects {spec.expected}")
