import functools
import http.server
import json
import os
import threading
import urllib.parse

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from absl import flags

# Entry points define flags at import; pytest never parses a command line.
flags.FLAGS.mark_as_parsed()

# docs/extending.md's worked examples, registered before any entry point defines its flags: the
# tests over every model and every method run them too.
import examples.squared_mf  # noqa: E402,F401
import examples.top1_hint  # noqa: E402,F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("TFKD_DATA_DIR") or os.path.join(REPO, "..", "shared", "data")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
  """Every test gets its own cache directory: no test reads another's prepared data."""
  monkeypatch.setenv("TFKD_CACHE_DIR", str(tmp_path / "cache"))


def teacher_flagfile(tmp_path):
  """A trainers.train flagfile for a small synthetic teacher (trained first by the distill tests)."""
  path = tmp_path / "teacher.flags"
  path.write_text("--dim=16\n--epochs=3\n--eval_every=1\n--learning_rate=0.02\n")
  return str(path)


def subprocess_env(tmp_path, **extra):
  """The environment of an entry point run as a subprocess: its own cache, quiet TF logs."""
  return dict(os.environ, TFKD_CACHE_DIR=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="3",
              **extra)


def trainer_args(tmp_path, trainer, flags_):
  """`-m <trainer> <flags>`; a trainers.distill run also gets a teacher directory under
  `tmp_path`, trained first from `teacher_flagfile`."""
  args = ["-m", trainer, *flags_]
  if trainer == "trainers.distill":
    args += [f"--teacher_dir={tmp_path}/teacher",
             f"--teacher_flagfile={teacher_flagfile(tmp_path)}"]
  return args


def perm_nll(ordered, tail=()):
  """NumPy oracle of the relaxed permutation NLL (DCD eq. 1) of one row in float64: the
  `ordered` scores in order, then the unordered `tail`."""
  ordered = np.asarray(ordered, np.float64)
  tail_sum = np.exp(np.asarray(tail, np.float64)).sum()
  return -sum(ordered[k] - np.log(np.exp(ordered[k:]).sum() + tail_sum)
              for k in range(len(ordered)))


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)


def shared_file(relpath):
  path = os.path.join(SHARED_DATA, relpath)
  if not os.path.isfile(path):
    pytest.skip(f"{relpath} not found under {SHARED_DATA} (set TFKD_DATA_DIR)")
  return path


@pytest.fixture
def tiny():
  from tfkd.data import load_dataset
  return load_dataset("synthetic", num_candidates=50,
                      synthetic_params=dict(num_users=60, num_items=120,
                                            interactions_per_user=10))


class FixedScores:
  """A stand-in model whose scores are a given [num_users, num_items] matrix."""

  def __init__(self, matrix):
    import tensorflow as tf
    self.matrix = tf.constant(np.asarray(matrix, np.float32))

  def score(self, users, items):
    import tensorflow as tf
    return tf.gather(tf.gather(self.matrix, users), items, batch_dims=1)

  def score_all(self, users):
    import tensorflow as tf
    return tf.gather(self.matrix, users)

  def score_users(self, items):
    import tensorflow as tf
    return tf.gather(tf.transpose(self.matrix), items)


def assert_scoring_paths(model, every, users, items, item_rows, tol=1e-4):
  """A model's three scoring paths against `every` [num_users, num_items], the scores its
  definition gives: score_all for every user, score(users, items) at those pairs, and
  score_users(item_rows) as columns of `every`."""
  import tensorflow as tf
  users, items, item_rows = np.asarray(users), np.asarray(items), np.asarray(item_rows)
  np.testing.assert_allclose(model.score_all(tf.range(every.shape[0])).numpy(), every,
                             rtol=tol, atol=tol)
  np.testing.assert_allclose(model.score(users, items).numpy(),
                             np.take_along_axis(every[users], items, 1), rtol=tol, atol=tol)
  np.testing.assert_allclose(model.score_users(tf.constant(item_rows)).numpy(),
                             every[:, item_rows].T, rtol=tol, atol=tol)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
  """A loopback HTTP server for `<root>/<host>/<path>`; yields (root, base URL)."""
  root = tmp_path / "mirror"
  root.mkdir()
  handler = functools.partial(_QuietHandler, directory=str(root))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  base = f"http://127.0.0.1:{server.server_address[1]}"
  monkeypatch.setenv("TFKD_DATA_MIRROR", base)
  monkeypatch.delenv("TFKD_DATA_DIR", raising=False)
  try:
    yield root, base
  finally:
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


def publish(root, url, data: bytes):
  """Puts `data` where the mirror serves `url`."""
  parts = urllib.parse.urlsplit(url)
  path = root / parts.netloc / parts.path.lstrip("/")
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)


def publish_derrd(root):
  """Serves the DE-RRD split's published pickles at the catalog's own URLs."""
  from tfkd.data import catalog
  for f in catalog.CATALOG["citeulike-derrd"].files:
    name = f.url.rsplit("/", 1)[1]
    publish(root, f.url, open(shared_file(f"citeulike/derrd_pickles/{name}"), "rb").read())
