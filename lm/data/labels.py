"""The class names of a classifier or tagger, in the order of its outputs, and their file in
the workdir (`labels.json`)."""

import json
import os
import re
from typing import Any, Iterable, Sequence

import jax

from lm.data import atomic, setting_names
from lm.data.reader import Record
from lm.errors import UserError

LABELS_FILE = "labels.json"
_INTEGER_RE = re.compile(r"^[+-]?\d+$")


class LabelSet:
  """The class names of a classifier, in the order of its outputs."""

  def __init__(self, names: Sequence[str], config_key: str = "config.data.labels"):
    names = tuple(names)
    if len(names) < 2:
      raise UserError(f"{config_key}: a classifier needs at least 2 labels, got {list(names)}")
    if len(set(names)) != len(names):
      raise UserError(f"{config_key}: duplicate labels in {', '.join(names)}")
    self._names = names
    self._index = {name: i for i, name in enumerate(names)}
    self._config_key = config_key

  @classmethod
  def from_config(cls,
                  labels: str,
                  records: Iterable[Record],
                  config_key: str = "config.data.labels") -> "LabelSet":
    """`labels`: comma-separated names, or '' for the sorted distinct labels of `records`.

    Inferred names sort numerically when all are integers. Every record's label must be in the
    set (checked here, so the error names the first bad line).
    """
    records = list(records)
    if not isinstance(labels, str):
      raise UserError(f"{config_key} must be a comma-separated string of labels, got {labels!r}")
    if labels.strip():
      names = [name.strip() for name in labels.split(",")]
      if not all(names):
        raise UserError(f"{config_key}: empty label name in {labels!r}")
    else:
      distinct = {r.values["label"].strip() for r in records if "label" in r.values}
      if not distinct:
        raise UserError(f"{config_key} is empty and the training records have no labels; set"
                        f" {setting_names.name('label_field')} to the label column, or list the"
                        " labels")
      names = sort_labels(distinct)
    label_set = cls(names, config_key)
    for record in records:
      if "label" in record.values:
        label_set.index(record.values["label"], record.where)
    return label_set

  @property
  def names(self) -> tuple[str, ...]:
    return self._names

  def __len__(self) -> int:
    return len(self._names)

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, LabelSet) and self._names == other.names

  def __repr__(self) -> str:
    return f"LabelSet({list(self._names)})"

  def index(self, value: str, where: str) -> int:
    """The class id of label `value` (surrounding whitespace ignored)."""
    i = self._index.get(value.strip())
    if i is None:
      raise UserError(f"{where}: label {value!r} is not one of {', '.join(self._names)}"
                      f" ({self._config_key})")
    return i

  def to_json(self) -> str:
    return json.dumps({"labels": list(self._names)}, ensure_ascii=False)

  @classmethod
  def from_json(cls, text: str, where: str = "labels.json") -> "LabelSet":
    try:
      names = json.loads(text)["labels"]
    except (json.JSONDecodeError, TypeError, KeyError) as e:
      raise UserError(f"{where}: corrupt label set ({e!r})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
      raise UserError(f"{where}: corrupt label set (expected a list of strings)")
    return cls(names, where)


def sort_labels(names: Iterable[str]) -> list[str]:
  """Sorted label names: numerically if all are integers, else as strings."""
  names = list(names)
  if all(_INTEGER_RE.match(name) for name in names):
    return sorted(names, key=lambda name: (int(name), name))
  return sorted(names)


def load_saved(workdir: str) -> "LabelSet | None":
  """The label set saved in `workdir` (a resumed run or a trained model), or None."""
  path = os.path.join(workdir, LABELS_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      return LabelSet.from_json(f.read(), where=path)
  except FileNotFoundError:
    return None


def load(workdir: str) -> "LabelSet":
  """The label set saved in `workdir`; a workdir without one is a UserError."""
  label_set = load_saved(workdir)
  if label_set is None:
    raise UserError(f"{workdir}: no {LABELS_FILE}; is this the workdir of a classifier or a "
                    f"tagger?")
  return label_set


def save(workdir: str, label_set: "LabelSet") -> None:
  """Writes `label_set` to `workdir` (process 0, once). Call it only after every label of the
  data was checked against the set, so that bad data leaves nothing behind."""
  path = os.path.join(workdir, LABELS_FILE)
  if jax.process_index() == 0 and not os.path.exists(path):
    atomic.atomic_write_text(path, label_set.to_json())
