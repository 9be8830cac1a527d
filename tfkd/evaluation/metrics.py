"""Top-N metrics of a single held-out item, from its 0-based rank.

With rank r (0 = first) and a list of N:
  H@N    = 1 if r < N else 0
  M@N    = 1 / (r + 1) if r < N else 0
  NDCG@N = 1 / log2(r + 2) if r < N else 0   (one relevant item, so IDCG = 1)
"""

import numpy as np

KINDS = ("H", "M", "NDCG")


def per_user_metrics(ranks, cutoffs=(5, 10)):
  """ranks int [U] -> {"H@5": float64 [U], ...} for every cutoff and kind."""
  ranks = np.asarray(ranks, np.float64)
  out = {}
  for n in cutoffs:
    inside = ranks < n
    out[f"H@{n}"] = inside.astype(np.float64)
    out[f"M@{n}"] = np.where(inside, 1.0 / (ranks + 1.0), 0.0)
    out[f"NDCG@{n}"] = np.where(inside, 1.0 / np.log2(ranks + 2.0), 0.0)
  return out


def summarize(per_user):
  """Means over users, as plain floats."""
  return {name: float(np.mean(values)) if len(values) else 0.0
          for name, values in per_user.items()}
