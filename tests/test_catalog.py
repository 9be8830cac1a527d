import hashlib
import os

import numpy as np
import pytest

from conftest import SHARED_DATA, shared_file
from tfkd.data import catalog, load_dataset, sources
from tfkd.errors import DataError


@pytest.mark.parametrize("name, relpath, expected", [
    ("citeulike", "citeulike/users.dat", (5219, 25181, 125580)),
    ("citeulike-derrd", "citeulike/derrd_loo/train.tsv", (5219, 25181, 125580)),
    ("ml-100k", "ml-100k/u.data", (943, 1682, 100000)),
])
def test_catalog_counts(name, relpath, expected):
  shared_file(relpath)
  d = load_dataset(name, data_dir=SHARED_DATA, num_candidates=0)
  total = d.num_train + (d.valid_items >= 0).sum() + (d.test_items >= 0).sum()
  assert (d.num_users, d.num_items, total) == expected


def test_derrd_split_is_read_as_given():
  path = shared_file("citeulike/derrd_loo/test.tsv")
  d = load_dataset("citeulike-derrd", data_dir=SHARED_DATA, num_candidates=3)
  with open(path) as f:
    next(f)
    first = [tuple(map(int, line.split())) for _, line in zip(range(5), f)]
  for u, i in first:
    assert d.test_items[u] == i
  assert d.num_train == 115142


def test_prepared_cache_is_reused(tmp_path):
  a = load_dataset("synthetic", num_candidates=10)
  files = list((tmp_path / "cache" / "prepared").glob("synthetic-*.npz"))
  assert len(files) == 1
  b = load_dataset("synthetic", num_candidates=10)
  np.testing.assert_array_equal(a.candidates, b.candidates)
  assert a.key == b.key
  c = load_dataset("synthetic", num_candidates=11)  # another recipe key, another entry
  assert c.key != a.key


def _source(tmp_path, text):
  src = tmp_path / "remote" / "users.dat"
  src.parent.mkdir()
  src.write_text(text)
  return src, hashlib.md5(text.encode()).hexdigest()


def test_download_verifies_checksum_into_cache(tmp_path, monkeypatch):
  src, md5 = _source(tmp_path, "5 1 2 3 4 5\n")
  monkeypatch.delenv("TFKD_DATA_DIR", raising=False)
  path, digest = sources.resolve_file(
      sources.SourceFile("x/users.dat", src.as_uri(), md5), data_dir=None)
  assert digest == md5 and open(path).read() == "5 1 2 3 4 5\n"
  assert path.startswith(str(tmp_path / "cache" / "data"))


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, monkeypatch):
  src, _ = _source(tmp_path, "5 1 2 3 4 5\n")
  monkeypatch.delenv("TFKD_DATA_DIR", raising=False)
  with pytest.raises(DataError, match="checksum mismatch"):
    sources.resolve_file(sources.SourceFile("x/users.dat", src.as_uri(), "0" * 32))
  assert not list((tmp_path / "cache").rglob("*users.dat*"))


def test_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
  monkeypatch.delenv("TFKD_DATA_DIR", raising=False)
  missing = (tmp_path / "nowhere.dat").as_uri()
  with pytest.raises(DataError) as e:
    sources.resolve_file(sources.SourceFile("x/users.dat", missing, None),
                         data_dir=str(tmp_path / "d"), dataset="x")
  message = str(e.value)
  assert "downloading" in message and os.path.join(str(tmp_path / "d"), "x/users.dat") in message
  assert "\n" not in message


def test_unknown_dataset():
  with pytest.raises(DataError, match="unknown dataset 'nope'; expected one of"):
    load_dataset("nope")


def test_derrd_split_fails_only_the_check_its_spec_accepts():
  """As published, 257 validation and 258 test items have no training row; nothing else."""
  from tfkd.data import checks
  shared_file("citeulike/derrd_loo/train.tsv")
  d = load_dataset("citeulike-derrd", data_dir=SHARED_DATA, num_candidates=0)
  found = {name: count for name, (count, _) in checks.find(d).items()}
  assert found == {"overlap": 0, "same_item": 0, "unseen_user": 0, "unseen_item": 515}
  assert catalog.CATALOG["citeulike-derrd"].accept == ("unseen_item",)
