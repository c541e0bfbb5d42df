"""Writes pilot splits for choosing a recipe without touching the reported validation data.

For imdb.py and sst2.py: the training records that their fine-tuning trains on (the reported
held-out records removed: IMDB's 10% of train, SST-2's 5%; SST-2 dev is never read), split
again with another seed into pilot train / pilot validation JSONL files ({"text", "label"}).
Pilot runs point a fine-tuning config at them:

    .venv/bin/python benchmarks/pilot_splits.py --out=runs/pilot
    python -m lm.main --config=experiments/imdb.py:no_pretrain --workdir=runs/pilot_imdb \\
        --config.data.source=runs/pilot/imdb_train.jsonl \\
        --config.data.valid_source=runs/pilot/imdb_valid.jsonl \\
        --config.data.text_field=text --config.data.label_field=label
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import imdb, sst2  # pylint: disable=g-import-not-at-top
from lm.data import records  # pylint: disable=g-import-not-at-top
from lm.tasks import supervised  # pylint: disable=g-import-not-at-top

# The pilot validation share of the remaining records: IMDB 2,500 of 22,500; SST-2 5%.
_PILOT_FRACTIONS = {"imdb": 0.1111, "sst2": 0.05}
_PILOT_SEED = 1  # supervised.SPLIT_SEED (0) holds out the reported records.


def write_jsonl(recs, path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    for rec in recs:
      f.write(json.dumps({"text": rec.values["text"], "label": rec.values["label"]}) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/pilot", help="directory for the JSONL files")
  out = parser.parse_args().out
  os.makedirs(out, exist_ok=True)
  for name, experiment in (("imdb", imdb), ("sst2", sst2)):
    config = experiment.get_config("no_pretrain")
    config.data.lowercase = False  # The pilot runs lower-case as their configs say.
    fields = {"text": config.data.text_field, "label": config.data.label_field}
    trained, reported = supervised.read_splits(config, fields)
    train, valid = records.held_out_split(trained, _PILOT_FRACTIONS[name], _PILOT_SEED)
    write_jsonl(train, os.path.join(out, f"{name}_train.jsonl"))
    write_jsonl(valid, os.path.join(out, f"{name}_valid.jsonl"))
    print(f"{name}: pilot train {len(train):,}, pilot validation {len(valid):,} "
          f"(reported validation {len(reported):,}, excluded)")


if __name__ == "__main__":
  main()
