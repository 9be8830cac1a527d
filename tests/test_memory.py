"""Peak memory of the whole-catalog passes stays bounded as the catalog grows: teacher rankings,
full-ranking evaluation, the DCD refresh and the CD-SG draws work in chunks of rows, so growing
the catalog 16-fold (4x users, 4x items) adds far less than one dense users x items matrix; the
state the methods keep per user and per item (DCD's setup) grows with rows x list length only.

Runs benchmarks/memory.py (which reads peak RSS from /proc; Linux) at two sizes in fresh
processes."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

CHUNKED = ("knowledge", "evaluate", "dcd_refresh", "cd_setup", "cd_refresh")


def row_entries(result):
  """Entries of per-row state: every user and item with its top list and observed columns."""
  return ((result["num_users"] + result["num_items"])
          * (2 * result["top_k"] + result["interactions_per_user"]))


def measure(users, items, chunk):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  r = subprocess.run([sys.executable, "benchmarks/memory.py", f"--num_users={users}",
                      f"--num_items={items}", f"--chunk_size={chunk}"], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  result = json.loads(r.stdout.strip().splitlines()[-1])
  return result, {name: p["peak_mib"] - p["start_mib"] for name, p in result["phases"].items()}


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_does_not_grow_with_the_catalog():
  small_result, small = measure(1500, 2000, chunk=64)
  large_result, large = measure(6000, 8000, chunk=64)
  dense = large_result["dense_matrix_mib"]  # 183 MiB of float32 for 6000 x 8000
  for name in CHUNKED:
    # A dense pass would hold at least one users x items matrix (often several); chunked passes
    # of 64 rows grow by 64 x 6,000 more columns: about 1.5 MiB per chunk-sized buffer (measured
    # growth 1-10 MiB with the mmap threshold pinned, see benchmarks/memory.py): bound a quarter.
    assert large[name] - small[name] < dense / 4, (name, small[name], large[name], dense)
  # DCD's setup builds RRD's excluded-pair hash tables (each user's observed and top-100 items,
  # each item's top-100 users) and the correction-list variables: ~38 bytes per entry measured
  # (47 MiB for the 1.26M more entries), bounded at 48. One dense matrix of the large catalog is
  # 152 bytes per added entry.
  added = row_entries(large_result) - row_entries(small_result)
  growth = large["dcd_setup"] - small["dcd_setup"]
  assert growth < 48 * added / 2**20, (small["dcd_setup"], large["dcd_setup"], added)
