"""Reading, preparing, splitting and caching interaction data, and its tf.data pipelines."""

from tfkd.data.catalog import (CATALOG, DatasetSpec, file_spec, load_dataset, names,
                               presplit_spec, register)
from tfkd.data.sources import SourceFile
from tfkd.data.dataset import Dataset
from tfkd.data.readers import RawLog, read_citeulike, read_delimited, read_movielens
from tfkd.data.recipes import Recipe, prepare
from tfkd.data.splits import NO_ITEM, leave_one_out, sample_candidates
