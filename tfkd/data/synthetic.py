"""A seeded synthetic interaction log: latent factors plus popularity skew.

Used by tests and by the offline quick start. User u picks items with probability proportional to
exp(<p_u, q_i> / temperature) * popularity_i, where popularity follows a Zipf law; the log has a
timestamp per row (the order of picks), so both split modes work on it.
"""

import numpy as np

from tfkd.data.readers import RawLog


def generate(num_users=200, num_items=300, interactions_per_user=20, dim=8, zipf=0.8,
             temperature=0.5, seed=0) -> RawLog:
  """Returns a RawLog with `num_users * interactions_per_user` distinct (user, item) pairs."""
  if interactions_per_user >= num_items:
    raise ValueError(
        f"interactions_per_user={interactions_per_user} must be below num_items={num_items}")
  rng = np.random.default_rng(seed)
  p = rng.normal(size=(num_users, dim)) / np.sqrt(dim)
  q = rng.normal(size=(num_items, dim))
  log_pop = -zipf * np.log(1.0 + rng.permutation(num_items))
  k = interactions_per_user
  picks = np.empty((num_users, k), np.int64)
  # In chunks of users (memory O(chunk x items), so large catalogs can be generated); the Gumbel
  # noise is drawn in row order, so the result does not depend on the chunk size.
  chunk = max(1, (1 << 22) // num_items)
  for start in range(0, num_users, chunk):
    rows = slice(start, min(start + chunk, num_users))
    logits = p[rows] @ q.T / temperature + log_pop
    # Gumbel top-k: a draw without replacement proportional to exp(logits).
    keys = -(logits + rng.gumbel(size=logits.shape))
    top = np.argpartition(keys, k - 1, axis=1)[:, :k]
    picks[rows] = np.take_along_axis(top, np.argsort(np.take_along_axis(keys, top, 1), 1), 1)
  users = np.repeat(np.arange(num_users), interactions_per_user)
  items = picks.reshape(-1)
  stamps = np.tile(np.arange(interactions_per_user, dtype=np.float64), num_users)
  stamps += rng.permutation(len(stamps)) * 1e-6  # distinct times, order kept per user
  # Shuffle rows so that ids are not trivially ordered in the file.
  perm = rng.permutation(len(users))
  return RawLog(users[perm].astype(str), items[perm].astype(str),
                ratings=np.ones(len(users)), timestamps=stamps[perm], source="synthetic")
