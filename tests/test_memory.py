"""Peak memory of the whole-catalog passes stays bounded as the catalog grows: teacher rankings,
full-ranking evaluation, the DCD refresh and the CD-SG draws work in chunks of rows, so growing
the catalog 16-fold (4x users, 4x items) adds far less than one dense users x items matrix.

Runs benchmarks/memory.py (which reads peak RSS from /proc; Linux) at two sizes in fresh
processes."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PHASES = ("knowledge", "evaluate", "dcd_refresh", "cd_refresh")


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
  _, small = measure(1500, 2000, chunk=64)
  large_result, large = measure(6000, 8000, chunk=64)
  dense = large_result["dense_matrix_mib"]  # 183 MiB of float32 for 6000 x 8000
  for name in PHASES:
    # A dense pass would hold at least one users x items matrix (often several); chunked passes
    # of 64 rows grow by 64 x 6,000 more columns: about 1.5 MiB per chunk-sized buffer. Peak RSS
    # also moves by allocator and thread-arena noise (up to ~20 MiB here): bound a quarter.
    assert large[name] - small[name] < dense / 4, (name, small[name], large[name], dense)
