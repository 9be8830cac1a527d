"""Where a dataset's source files come from: local directories, else a pinned download.

Lookup: the `data_dir` argument (the trainers' `--data_dir`), then `$TFKD_DATA_DIR`, then
`<cache dir>/data` (see `default_cache_dir`). A dataset's files come from one place: the first of
these directories that holds any of them must hold all of them (the cache excepted, where missing
files are downloaded). A file found nowhere is downloaded from its commit-pinned URL, its md5
verified, converted when the published form is not the one tfkd reads (a zip member, a pickle),
verified again, and renamed into the cache; nothing is left behind when any step fails.

`$TFKD_DATA_MIRROR` (a base URL, `http://` or `file://`) replaces the scheme of every download
address, so `https://host/path` is fetched from `<mirror>/host/path`: a mirror of the pinned
sources for machines without internet access. The checksums are verified all the same.
"""

import dataclasses
import io as _io
import os
import pickle
import shutil
import urllib.parse
import urllib.request
import zipfile
from typing import Callable, Dict, Optional, Sequence, Tuple

from absl import logging

from tfkd import io
from tfkd.data.dataset import default_cache_dir
from tfkd.errors import DataError

DATA_DIR_ENV = "TFKD_DATA_DIR"
MIRROR_ENV = "TFKD_DATA_MIRROR"


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """One source file of a dataset.

  Attributes:
    relpath: its path inside a data directory.
    url: the commit-pinned address it is downloaded from, or None.
    md5: md5 of the file at `relpath`.
    convert: how the downloaded bytes become that file: "" (they are the file), "zip:<member>",
      "derrd-pairs" or "derrd-heldout" (the DE-RRD split's pickles, see `_derrd_tsv`).
    fetched_md5: md5 of the downloaded bytes when they are converted.
  """

  relpath: str
  url: Optional[str]
  md5: Optional[str]
  convert: str = ""
  fetched_md5: Optional[str] = None


def search_dirs(data_dir=None):
  dirs = [data_dir, os.environ.get(DATA_DIR_ENV), os.path.join(default_cache_dir(), "data")]
  return [d for d in dirs if d]


def locate(files: Sequence[SourceFile], data_dir=None, dataset="") -> Tuple[str, list]:
  """The directory a dataset's files are read from, and those of its files it lacks (to be
  downloaded into it: only the cache lacks any)."""
  dirs = search_dirs(data_dir)
  for d in dirs[:-1]:
    present = [f.relpath for f in files if os.path.isfile(os.path.join(d, f.relpath))]
    if present:
      missing = [f.relpath for f in files if f.relpath not in present]
      if missing:
        raise DataError(f"dataset {dataset!r}: {d} holds {', '.join(present)} but not "
                        f"{', '.join(missing)}; a dataset's files must all come from one "
                        "directory")
      return d, []
  return dirs[-1], [f for f in files if not os.path.isfile(os.path.join(dirs[-1], f.relpath))]


def resolve_files(files: Sequence[SourceFile], data_dir=None, dataset="") -> Tuple[list, dict]:
  """Finds (or downloads) every file of a dataset in one place; returns (paths, {relpath: md5})."""
  dirs = search_dirs(data_dir)
  home, _ = locate(files, data_dir, dataset)
  paths, digests = [], {}
  for f in files:
    path, digest = _resolve(f, home, dirs, data_dir, dataset)
    paths.append(path)
    digests[f.relpath] = digest
  return paths, digests


def resolve_file(source: SourceFile, data_dir=None, dataset="") -> Tuple[str, str]:
  """Finds (or downloads) one source file; returns (path, md5)."""
  paths, digests = resolve_files([source], data_dir, dataset)
  return paths[0], digests[source.relpath]


def _resolve(source, home, dirs, data_dir, dataset):
  path = os.path.join(home, source.relpath)
  if os.path.isfile(path):
    digest = io.md5_file(path)
    if source.md5 and digest != source.md5:
      logging.warning("%s: md5 %s differs from the catalog's %s; results will not match "
                      "the published copy", path, digest, source.md5)
    return path, digest
  where = os.path.join(data_dir or dirs[0], source.relpath)
  if not source.url:
    raise DataError(f"dataset {dataset!r}: {source.relpath} not found in {', '.join(dirs)} and "
                    f"it has no download source; put the file at {where}")
  url = mirrored(source.url)
  try:
    download(url, path, source.md5, source.convert, source.fetched_md5)
  except (OSError, DataError) as e:
    raise DataError(f"dataset {dataset!r}: {source.relpath} not found in {', '.join(dirs)} and "
                    f"downloading {url} failed ({e}); put the file at {where}") from None
  return path, source.md5 or io.md5_file(path)


def mirrored(url):
  """`url` fetched through `$TFKD_DATA_MIRROR` when it is set."""
  mirror = os.environ.get(MIRROR_ENV)
  if not mirror:
    return url
  parts = urllib.parse.urlsplit(url)
  return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def download(url, target, md5=None, convert="", fetched_md5=None, timeout=60):
  """Downloads `url` to `target` atomically: the fetched bytes are checked against
  `fetched_md5` (or `md5` when there is no conversion), converted, and the result against `md5`."""
  with io.atomic_path(target) as tmp:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
      shutil.copyfileobj(response, f)
    want = fetched_md5 if convert else md5
    digest = io.md5_file(tmp)
    if want and digest != want:
      raise DataError(f"checksum mismatch: got md5 {digest}, expected {want}")
    if convert:
      with open(tmp, "rb") as f:
        data = _convert(convert, f.read(), url)
      with open(tmp, "wb") as f:
        f.write(data)
      digest = io.md5_file(tmp)
      if md5 and digest != md5:
        raise DataError(f"checksum mismatch after {convert}: got md5 {digest}, expected {md5}")
  logging.info("downloaded %s to %s", url, target)


def _convert(convert, data: bytes, url) -> bytes:
  kind, _, arg = convert.partition(":")
  if kind == "zip":
    try:
      with zipfile.ZipFile(_io.BytesIO(data)) as z:
        return z.read(arg)
    except KeyError:
      raise DataError(f"{url}: the archive has no member {arg!r}") from None
    except zipfile.BadZipFile as e:
      raise DataError(f"{url}: not a zip archive ({e})") from None
  if kind in _PICKLE_CONVERTERS:
    return _PICKLE_CONVERTERS[kind](safe_unpickle(data, url), url)
  raise ValueError(f"unknown conversion {convert!r}")


class _NoGlobals(pickle.Unpickler):
  """An unpickler that refuses every global, so loading runs no code: a pickle reaches a
  callable only through `find_class` (GLOBAL, STACK_GLOBAL and the EXT opcodes)."""

  def find_class(self, module, name):
    raise pickle.UnpicklingError(f"it references the global {module}.{name}, expected plain "
                                 "dicts and ints")

  def persistent_load(self, pid):
    raise pickle.UnpicklingError("it holds a persistent id, expected plain dicts and ints")


def safe_unpickle(data: bytes, source=""):
  """Loads a pickle of plain data (dicts, lists, ints, strings) and refuses any global in one
  line: never `pickle.load` on downloaded bytes."""
  try:
    return _NoGlobals(_io.BytesIO(data)).load()
  except Exception as e:  # the C unpickler raises many types for malformed input
    raise DataError(f"{source}: refused pickle: {e}") from None


def _int_dict(obj, source, what):
  if not isinstance(obj, dict) or not all(type(k) is int and k >= 0 for k in obj):
    raise DataError(f"{source}: expected {what} keyed by non-negative int ids")
  return obj


def _derrd_pairs(obj, source):
  """{user: {item: 1}} -> 'user<TAB>item' rows sorted by user, then item."""
  rows = []
  for u, items in _int_dict(obj, source, "{user: {item: 1}}").items():
    for i in _int_dict(items, source, "{user: {item: 1}}"):
      rows.append((u, i))
  return _tsv(sorted(rows))


def _derrd_heldout(obj, source):
  """{user: item} -> 'user<TAB>item' rows sorted by user."""
  pairs = _int_dict(obj, source, "{user: item}")
  if not all(type(i) is int and i >= 0 for i in pairs.values()):
    raise DataError(f"{source}: expected {{user: item}} with non-negative int items")
  return _tsv(sorted(pairs.items()))


def _tsv(rows):
  return ("user\titem\n" + "".join(f"{u}\t{i}\n" for u, i in rows)).encode()


_PICKLE_CONVERTERS: Dict[str, Callable] = {"derrd-pairs": _derrd_pairs,
                                           "derrd-heldout": _derrd_heldout}
