"""Leave-one-out splits and sampled-evaluation candidates."""

import numpy as np

from tfkd.errors import DataError

NO_ITEM = -1  # marks a user without a held-out item


def leave_one_out(users, items, num_users, timestamps=None, by="random", seed=0):
  """Holds out one test and one validation item per user.

  Args:
    users, items: int arrays of de-duplicated interactions.
    num_users: number of users.
    timestamps: needed for `by="timestamp"`.
    by: "random" (seeded uniform choice) or "timestamp" (test = last, valid = second to last;
      ties broken by input order).
    seed: seed of the random choice.

  Returns:
    (train_users, train_items, valid_items [num_users], test_items [num_users]). Training pairs
    are sorted by user, then by time (input order without timestamps). Users with fewer than 3
    interactions keep all of them for training and get NO_ITEM held out.
  """
  users = np.asarray(users, np.int64)
  items = np.asarray(items, np.int64)
  position = np.arange(len(users))
  if by == "timestamp":
    if timestamps is None:
      raise DataError("leave-one-out by timestamp needs a timestamp column")
    order = np.lexsort((position, np.asarray(timestamps), users))
  elif by == "random":
    order = np.lexsort((position, users))
  else:
    raise DataError(f"split must be 'random' or 'timestamp', got {by!r}")
  users, items = users[order], items[order]
  counts = np.bincount(users, minlength=num_users)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  valid = np.full(num_users, NO_ITEM, np.int64)
  test = np.full(num_users, NO_ITEM, np.int64)
  held = np.zeros(len(users), bool)
  eligible = np.flatnonzero(counts >= 3)
  if by == "timestamp":
    test_pos = starts[eligible] + counts[eligible] - 1
    valid_pos = test_pos - 1
  else:
    rng = np.random.default_rng(seed)
    n = counts[eligible]
    a = rng.integers(0, n)  # test offset
    b = rng.integers(0, n - 1)  # valid offset among the others
    b = b + (b >= a)
    test_pos, valid_pos = starts[eligible] + a, starts[eligible] + b
  test[eligible] = items[test_pos]
  valid[eligible] = items[valid_pos]
  held[test_pos] = True
  held[valid_pos] = True
  return users[~held], items[~held], valid, test


def sample_candidates(num_items, seen_indptr, seen_indices, num_candidates, seed=0):
  """Draws, per user, `num_candidates` distinct items the user never interacted with.

  Args:
    num_items: catalog size.
    seen_indptr, seen_indices: CSR rows of every item of each user (train, valid and test).
    num_candidates: N; 0 gives an empty [num_users, 0] array.
    seed: seed of the draw.

  Returns: int32 [num_users, num_candidates], each row sorted.
  """
  num_users = len(seen_indptr) - 1
  out = np.empty((num_users, num_candidates), np.int32)
  if num_candidates == 0:
    return out
  rng = np.random.default_rng(seed)
  for u in range(num_users):
    seen = seen_indices[seen_indptr[u]:seen_indptr[u + 1]]
    free = num_items - len(np.unique(seen))
    if free < num_candidates:
      raise DataError(
          f"user {u} has only {free} unobserved items, fewer than the {num_candidates} "
          "sampled-evaluation candidates asked for (lower --num_candidates)")
    if free < 4 * num_candidates:
      pool = np.setdiff1d(np.arange(num_items), seen)
      out[u] = np.sort(rng.choice(pool, num_candidates, replace=False))
      continue
    chosen = np.empty(0, np.int64)
    while len(chosen) < num_candidates:
      draw = rng.integers(0, num_items, 2 * num_candidates + len(seen))
      draw = draw[~np.isin(draw, seen)]
      chosen = np.concatenate([chosen, draw])
      _, first = np.unique(chosen, return_index=True)
      chosen = chosen[np.sort(first)]
    out[u] = np.sort(chosen[:num_candidates])
  return out
