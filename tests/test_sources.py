"""Downloads without a network: the catalog's real, pinned URLs served from loopback through
$TFKD_DATA_MIRROR; the safe unpickler; one place per dataset."""

import hashlib
import io
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest

from conftest import SHARED_DATA, publish, publish_derrd, shared_file
from tfkd.data import catalog, load_dataset, sources
from tfkd.errors import DataError

DERRD = catalog.CATALOG["citeulike-derrd"]


def test_every_catalog_dataset_has_a_pinned_download():
  for spec in catalog.CATALOG.values():
    for f in spec.files:
      assert f.url and f.url.startswith("https://") and len(f.md5) == 32, (spec.name, f)
      assert (f.fetched_md5 is not None) == bool(f.convert), (spec.name, f)


def test_mirror_maps_the_pinned_url():
  assert sources.mirrored("https://h.org/a/b.zip") == "https://h.org/a/b.zip"
  os.environ[sources.MIRROR_ENV] = "file:///m/"
  try:
    assert sources.mirrored("https://h.org/a/b.zip") == "file:///m/h.org/a/b.zip"
  finally:
    del os.environ[sources.MIRROR_ENV]


def test_derrd_download_equals_the_local_split_bit_for_bit(mirror, tmp_path):
  """The published pickles, fetched over HTTP and converted, give the dataset the tsv copies
  give: the same files (md5), arrays and key."""
  publish_derrd(mirror[0])
  downloaded = load_dataset("citeulike-derrd", num_candidates=3)
  for f in DERRD.files:
    cached = tmp_path / "cache" / "data" / f.relpath
    assert open(cached, "rb").read() == open(shared_file(f.relpath), "rb").read()
  local = load_dataset("citeulike-derrd", data_dir=SHARED_DATA, num_candidates=3, use_cache=False)
  assert downloaded.key == local.key
  for field in ("train_users", "train_items", "valid_items", "test_items", "candidates"):
    np.testing.assert_array_equal(getattr(downloaded, field), getattr(local, field))


def test_zip_member_download(mirror, tmp_path):
  data = b"1\t2\t5\t881250949\n2\t1\t3\t891717742\n"
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    z.writestr("ml-100k/u.data", data)
  url = "https://example.org/ml.zip"
  publish(mirror[0], url, buf.getvalue())
  f = sources.SourceFile("ml/u.data", url, hashlib.md5(data).hexdigest(), "zip:ml-100k/u.data",
                         hashlib.md5(buf.getvalue()).hexdigest())
  path, _ = sources.resolve_file(f)
  assert open(path, "rb").read() == data
  missing = sources.SourceFile("ml/v.data", url, None, "zip:ml-100k/none", f.fetched_md5)
  with pytest.raises(DataError, match="the archive has no member 'ml-100k/none'"):
    sources.resolve_file(missing)


class _Marker:
  """Unpickling this would call os.system."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return os.system, (f"touch {self.path}",)


def test_a_pickle_that_names_a_global_is_refused_and_runs_nothing(mirror, tmp_path):
  ran = tmp_path / "ran"
  evil = pickle.dumps({0: _Marker(ran)})
  url = f"{DERRD.files[1].url}-evil"
  publish(mirror[0], url, evil)
  f = sources.SourceFile("x/valid.tsv", url, None, "derrd-heldout",
                         hashlib.md5(evil).hexdigest())
  with pytest.raises(DataError) as e:
    sources.resolve_file(f, dataset="x")
  assert "refused pickle: it references the global" in str(e.value) and "system" in str(e.value)
  assert "\n" not in str(e.value)
  assert not ran.exists()
  assert not list((tmp_path / "cache").rglob("*valid.tsv*"))


def test_safe_unpickle_reads_plain_data_and_checks_its_shape():
  assert sources.safe_unpickle(pickle.dumps({1: {2: 1}}, protocol=2)) == {1: {2: 1}}
  with pytest.raises(DataError, match="expected {user: item} keyed by non-negative int ids"):
    sources._derrd_heldout({"a": 1}, "src")


def test_md5_mismatch_caches_nothing(mirror, tmp_path):
  publish_derrd(mirror[0])
  bad = DERRD.files[1]
  publish(mirror[0], bad.url, pickle.dumps({0: 1}))  # not the published bytes
  with pytest.raises(DataError) as e:
    load_dataset("citeulike-derrd", num_candidates=3)
  message = str(e.value)
  assert f"checksum mismatch: got md5" in message and bad.fetched_md5 in message
  assert "\n" not in message
  cached = tmp_path / "cache" / "data"
  assert not list(cached.rglob("*valid*"))
  assert not list((tmp_path / "cache").rglob("*.npz"))


def test_a_partial_data_dir_is_refused(tmp_path, monkeypatch):
  shared_file("citeulike/derrd_loo/train.tsv")
  d = tmp_path / "d" / "citeulike" / "derrd_loo"
  d.mkdir(parents=True)
  for name in ("train", "valid"):
    shutil.copy(os.path.join(SHARED_DATA, f"citeulike/derrd_loo/{name}.tsv"), d)
  monkeypatch.setenv(sources.DATA_DIR_ENV, SHARED_DATA)  # holds test.tsv: never mixed in
  with pytest.raises(DataError) as e:
    load_dataset("citeulike-derrd", data_dir=str(tmp_path / "d"))
  assert str(e.value) == (
      f"dataset 'citeulike-derrd': {tmp_path / 'd'} holds citeulike/derrd_loo/train.tsv, "
      "citeulike/derrd_loo/valid.tsv but not citeulike/derrd_loo/test.tsv; a dataset's files "
      "must all come from one directory")
