"""Shared by the distillation tests: small slices of the vendored SST-2 rows and the smoke
classifier that reads them (a teacher, or a student with config.distill settings)."""

import pathlib

from experiments import sst2
from tests.conftest import FIXTURES


def sst2_rows() -> list[str]:
  """The vendored SST-2 training rows, header first."""
  with open(FIXTURES / "sst2" / "train.tsv", encoding="utf-8") as f:
    return f.read().splitlines()


def write_slices(directory: pathlib.Path, train: int, valid: int) -> dict:
  """train.tsv (the first `train` rows) and valid.tsv (the `valid` rows after them) in
  `directory`: their paths, and the directory as "dir"."""
  lines = sst2_rows()
  (directory / "train.tsv").write_text("\n".join(lines[:train + 1]) + "\n", encoding="utf-8")
  (directory / "valid.tsv").write_text(
      "\n".join(lines[:1] + lines[train + 1:train + 1 + valid]) + "\n", encoding="utf-8")
  return {"train": str(directory / "train.tsv"), "valid": str(directory / "valid.tsv"),
          "dir": directory}


def classifier_config(files: dict, **distill):
  """sst2.py's smoke classifier on `files` (write_slices), with config.distill.`distill`."""
  config = sst2.get_config("no_pretrain,smoke")
  config.data.update(source=files["train"], valid_source=files["valid"])
  config.train.sample_prompt = ""
  config.distill.update(distill)
  return config


def trained_teacher(files: dict, **data) -> str:
  """The workdir of classifier_config's classifier (config.data.`data` set) trained on `files`:
  a teacher."""
  from lm.training import trainer  # pylint: disable=g-import-not-at-top
  config = classifier_config(files)
  config.data.update(data)
  workdir = str(files["dir"] / "teacher")
  trainer.train_and_evaluate(config, workdir)
  return workdir
