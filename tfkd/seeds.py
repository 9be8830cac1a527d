"""Every seed tfkd derives from a run's `--seed`, in one place.

A sampler that draws anew each epoch seeds its draw with `for_epoch(seed, epoch, stream)`:
`seed * stride + epoch + offset`, the stride and offset of its stream below. The strides differ
for history only: changing one would change every result measured with it.
"""

# stream: (stride, offset)
STREAMS = {
    "rrd_lists": (1000003, 0),  # RRD's and DCD's sampled lists, user side (item side: + ITEM_SIDE)
    "cd_draws": (1000003, 0),  # CD's rank-aware samples
    "dcd_refresh": (1000, 0),  # DCD's correction lists
    "negatives": (1000003, 1),  # the training pipeline's negatives, from the epoch's seed
}
# Added to a user-side seed for the item side's draws of the same epoch.
ITEM_SIDE = 104729


def for_epoch(seed, epoch, stream):
  """The seed of `stream`'s draw at `epoch` (ints or integer tensors)."""
  stride, offset = STREAMS[stream]
  return seed * stride + epoch + offset
