"""Atomic file output: readers never see a half-written file."""

import contextlib
import hashlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path next to `path`; renames it to `path` only on success."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  base = os.path.basename(path)
  # The temporary name ends with the full base name: some writers check the suffix (Keras wants
  # ".weights.h5", numpy appends ".npz" otherwise). mkstemp reserves it; the writer replaces it.
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{base}", dir=directory)
  os.close(fd)
  try:
    yield tmp
    if os.path.isfile(tmp):
      plain_mode(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def plain_mode(path):
  """Gives a mkstemp file (0600) or mkdtemp directory (0700) the mode a plain open() or mkdir()
  would have (0666 / 0777 minus the umask), so readers such as a serving container can read it."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask)


def write_text(path, text):
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)


def write_json(path, obj):
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def md5_file(path):
  """Hex md5 of a file, read in 1 MiB blocks."""
  h = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()
