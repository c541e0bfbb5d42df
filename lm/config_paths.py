"""The file paths of a config made absolute, so that a saved run (config.json) means the same
files from any working directory: resuming, lm.predict and init_from work from anywhere."""

import copy
import os
from typing import Any

from lm.data import reader, text_files

# Keys holding data sources: comma-separated paths, globs, 'ARCHIVE:MEMBER_GLOB' or 'tfds:NAME'.
SOURCE_KEYS = ("data.source", "data.valid_source", "data.test_source", "distill.transfer")
# Keys holding one directory ('' = none).
DIRECTORY_KEYS = ("init_from", "distill.teacher", "distill.cache_dir", "data.prepared",
                  "data.tfds_data_dir")


# Replaced by config.seed in config.init_from: each seed of a sweep reads its own run.
SEED_FIELD = "{seed}"


def absolute_paths(config: Any) -> Any:
  """A copy of `config` (a ConfigDict) with every path of SOURCE_KEYS and DIRECTORY_KEYS
  absolute (relative ones are taken from the working directory, as the command meant them),
  and `{seed}` in config.init_from replaced by config.seed."""
  config = copy.deepcopy(config)
  for key in SOURCE_KEYS + DIRECTORY_KEYS:
    section, _, name = key.rpartition(".")
    node = config[section] if section else config
    node[name] = saved_value(key, node[name], config.seed)
  return config


def saved_value(key: str, value: Any, seed: int) -> Any:
  """`value` of config key `key` as a run saves it in config.json: a path of SOURCE_KEYS or
  DIRECTORY_KEYS absolute (`{seed}` of init_from replaced by `seed`), any other value as is."""
  if key == "init_from" and isinstance(value, str):
    value = value.replace(SEED_FIELD, str(seed))
  if key not in SOURCE_KEYS + DIRECTORY_KEYS or not isinstance(value, str) or not value.strip():
    return value
  return absolute_source(value) if key in SOURCE_KEYS else _absolute(value.strip())


def absolute_source(source: str) -> str:
  """'a.txt, data/*.tsv, x.tar.gz:*/y/*, tfds:imdb' with each local path made absolute."""
  if source.strip().startswith(reader.TFDS_PREFIX):
    return source
  entries = []
  for entry in (e.strip() for e in source.split(",")):
    if not entry:
      continue
    match = text_files.ARCHIVE_RE.match(entry)
    if match and match.group(2) is not None:
      entries.append(f"{_absolute(match.group(1))}:{match.group(2)}")
    else:
      entries.append(_absolute(entry))
  return ",".join(entries)


def _absolute(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path))
