
import numpy as np
import pytest

from tfkd.data import catalog, readers
from tfkd.errors import DataError


def write(tmp_path, name, text):
  path = tmp_path / name
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return str(path)


def test_citeulike_reads_users_in_line_order(tmp_path):
  log = readers.read_citeulike(write(tmp_path, "users.dat", "2 7 3\n1 3\n0\n3 1 2 9"))
  assert log.users.tolist() == ["0", "0", "1", "3", "3", "3"]
  assert log.items.tolist() == ["7", "3", "3", "1", "2", "9"]


@pytest.mark.parametrize("text, line, words", [
    ("2 7 3\n2 4 x\n", 2, "expected an integer item id, got 'x'"),
    ("2 7 3\n3 4 5\n", 2, "count says 3 items but the line lists 2"),
    ("1 -4\n", 1, "non-negative item id"),
    ("1 4\n\n1 5\n", 2, "empty line"),
])
def test_citeulike_bad_lines_name_file_and_line(tmp_path, text, line, words):
  path = write(tmp_path, "users.dat", text)
  with pytest.raises(DataError) as e:
    readers.read_citeulike(path)
  assert str(e.value).startswith(f"{path}:{line}: ")
  assert words in str(e.value)
  assert "\n" not in str(e.value)


def test_empty_file(tmp_path):
  path = write(tmp_path, "u.data", "\n  \n")
  with pytest.raises(DataError, match="file is empty"):
    readers.read_movielens(path)


def test_delimited_with_header_and_missing_column(tmp_path):
  log = readers.read_delimited(write(tmp_path, "a.csv", "item,user,rating\na,u1,4\nb,u2,5\n"),
                               sep=",", header=True, integer_ids=False)
  assert log.users.tolist() == ["u1", "u2"] and log.items.tolist() == ["a", "b"]
  np.testing.assert_array_equal(log.ratings, [4, 5])
  path = write(tmp_path, "b.csv", "user,rating\n1,3\n")
  with pytest.raises(DataError, match=r"b.csv:1: missing column\(s\) item"):
    readers.read_delimited(path, sep=",", header=True)


def test_movielens_wrong_field_count_and_bad_rating(tmp_path):
  path = write(tmp_path, "u.data", "1\t2\t3\t100\n1\t2\t3\n")
  with pytest.raises(DataError, match="u.data:2: expected 4 fields"):
    readers.read_movielens(path)
  path = write(tmp_path, "v.data", "1\t2\tgood\t100\n")
  with pytest.raises(DataError, match="v.data:1: expected a number for rating"):
    readers.read_movielens(path)


def test_presplit_id_outside_catalog(tmp_path):
  path = write(tmp_path, "t.tsv", "user\titem\n0\t1\n1\t5\n")
  with pytest.raises(DataError, match=r"t.tsv:3: item id 5 outside the catalog of 5 items"):
    readers.read_indexed_pairs(path, num_users=2, num_items=5)


def _bad_citeulike_dir(tmp_path):
  root = tmp_path / "data"
  write(root, "citeulike/users.dat", "5 1 2 3 4 5\n5 1 2 3 x 5\n")
  return str(root)


def test_bad_data_through_catalog_leaves_no_cache(tmp_path):
  data_dir = _bad_citeulike_dir(tmp_path)
  cache = tmp_path / "c"
  with pytest.raises(DataError, match=r"users.dat:2: expected an integer item id, got 'x'"):
    catalog.load_dataset("citeulike", data_dir=data_dir, cache_dir=str(cache))
  assert not cache.exists() or not any(cache.rglob("*.npz"))


@pytest.mark.parametrize("text, columns", [
    ("user,item\n1,2\n3,4\n", ("user", "item")),
    ("userId,movieId,rating\n1,2,5\n3,4,4\n", ("user", "item", "rating")),  # 'rating' fails
])
def test_a_header_read_as_data_is_named(tmp_path, text, columns):
  path = write(tmp_path, "r.csv", text)
  with pytest.raises(DataError) as e:
    readers.read_delimited(path, columns=columns, sep=",", integer_ids=False)
  assert str(e.value).startswith(f"{path}:1: looks like a header (")
  assert str(e.value).endswith("not data: pass --data_header")


@pytest.mark.parametrize("text", [
    "alice,x\nbob,y\n",  # string ids throughout: data
    "7,x\n8,y\n",
    "user,item\n",  # no other row to compare with
])
def test_a_first_row_like_the_others_is_data(tmp_path, text):
  log = readers.read_delimited(write(tmp_path, "r.csv", text), columns=("user", "item"),
                               sep=",", integer_ids=False)
  assert len(log) == text.count("\n")


@pytest.mark.parametrize("text, sep, flag", [
    ("u1\ti1\nu2\ti2\n", ",", "--data_sep=tab"),
    ("u1,i1\nu2,i2\n", "\t", "--data_sep=comma"),
    ("u1;i1\nu2;i2\n", ",", "--data_sep=';'"),
])
def test_a_wrong_separator_names_the_flag(tmp_path, text, sep, flag):
  path = write(tmp_path, "r.txt", text)
  with pytest.raises(DataError, match=r"r.txt:1: expected 2 fields \(user, item\), got 1; the "
                                      r"line is one field holding"):
    readers.read_delimited(path, columns=("user", "item"), sep=sep, integer_ids=False)
  with pytest.raises(DataError) as e:
    readers.read_delimited(path, columns=("user", "item"), sep=sep, integer_ids=False)
  assert str(e.value).endswith(f"pass {flag}")
