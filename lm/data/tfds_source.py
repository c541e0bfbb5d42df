"""Reading documents from a prepared TFDS dataset through its random-access ArrayRecord source.

Never downloads: a dataset that is not prepared locally is a `UserError` saying how to prepare
it, so training runs and tests stay offline and reproducible.
"""

import os
from typing import Any, Iterator

import numpy as np

from lm.data import setting_names
from lm.errors import UserError


def read_tfds(
    name: str,
    *,
    split: str,
    text_field: str = "text",
    encoding_errors: str = "strict",
    data_dir: str | None = None,
    config_key: str = "config.data.source",
) -> list[str]:
  """Returns the non-blank `text_field` of every example of TFDS dataset `name` in `split`."""
  documents = list(
      iter_tfds(name, split=split, text_field=text_field, encoding_errors=encoding_errors,
                data_dir=data_dir, config_key=config_key))
  if not documents:
    raise UserError(f"{config_key}='tfds:{name}' (split {split!r}): no documents found (the split"
                    " is empty or all texts are blank)")
  return documents


def iter_tfds(
    name: str,
    *,
    split: str,
    text_field: str = "text",
    encoding_errors: str = "strict",
    data_dir: str | None = None,
    config_key: str = "config.data.source",
) -> Iterator[str]:
  """`read_tfds` streamed: the non-blank texts one at a time (for corpora larger than RAM)."""
  if not name:
    raise UserError(f"{config_key}: 'tfds:' needs a dataset name, e.g. 'tfds:tiny_shakespeare'")
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        f"{config_key}='tfds:{name}' needs tensorflow-datasets: pip install tensorflow-datasets"
    ) from None
  where = f"{config_key}='tfds:{name}' (split {split!r})"
  try:
    # download=False: a missing dataset must fail fast here, not start a download mid-run.
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except tfds.core.DatasetNotFoundError:
    raise UserError(
        f"{where}: TFDS has no dataset named {name.split('/')[0]!r}; check the name in the"
        " TFDS catalog (https://www.tensorflow.org/datasets/catalog) or use local files") from None
  except Exception as e:  # pylint: disable=broad-except  # TFDS raises many types here.
    raise UserError(
        f"{where}: {_open_failure_reason(tfds, name, data_dir, e)}. Prepare it once (needs"
        f" network) with `tfds build {name} --file_format=array_record` or"
        f" `tfds.builder({name!r}).download_and_prepare(file_format='array_record')`") from None

  for index, example in enumerate(source):
    text = _text_of(example, text_field, encoding_errors, where=f"{where}, example {index}")
    if text.strip():
      yield text


def _open_failure_reason(tfds: Any, name: str, data_dir: str | None, error: Exception) -> str:
  """Why `tfds.data_source` failed, in words (TFDS's own message is misleading when unprepared)."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    prepared, location = builder.is_prepared(), builder.data_dir
  except Exception:  # pylint: disable=broad-except
    prepared = None
    location = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
  if prepared is False:
    return f"the dataset is not prepared in {location}"
  if isinstance(error, NotImplementedError):
    return f"the dataset in {location} is prepared as TFRecord, but random access needs ArrayRecord"
  first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
  return f"cannot open it in {location} ({first_line}; check that the split exists)"


def _text_of(example: Any, text_field: str, encoding_errors: str, *, where: str) -> str:
  if not isinstance(example, dict) or text_field not in example:
    fields = ", ".join(map(repr, example)) if isinstance(example, dict) else "none"
    raise UserError(
        f"{where}: no feature {text_field!r} (features: {fields}); set "
        f"{setting_names.name('text_field')}")
  value = example[text_field]
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if isinstance(value, str):
    return value
  if isinstance(value, bytes):  # Also numpy.bytes_: TFDS returns Text features as bytes.
    try:
      return value.decode("utf-8", errors=encoding_errors)
    except UnicodeDecodeError as e:
      raise UserError(f"{where}: invalid UTF-8 at byte offset {e.start} of feature {text_field!r};"
                      f" set {setting_names.name('encoding_errors')}='replace'") from None
  raise UserError(f"{where}: feature {text_field!r} is {type(value).__name__}, not text; set"
                  f" {setting_names.name('text_field')} to a text feature")
