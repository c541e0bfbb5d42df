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

SST-2's training records are phrases of parsed sentences, while its dev set holds whole
sentences whose phrases were never trained on. `sst2_sentences_*` mimics that: its validation
part is whole training sentences (phrases contained in no longer phrase), and its training part
drops every phrase that occurs only inside those sentences.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import imdb, sst2  # pylint: disable=g-import-not-at-top
from lm.data import splits  # pylint: disable=g-import-not-at-top
from lm.tasks import supervised  # pylint: disable=g-import-not-at-top

# The pilot validation share of the remaining records: IMDB 2,500 of 22,500; SST-2 5%.
_PILOT_FRACTIONS = {"imdb": 0.1111, "sst2": 0.05}
_PILOT_SEED = 1  # supervised.SPLIT_SEED (0) holds out the reported records.
_SST2_SENTENCES = 900  # About SST-2 dev's 872.


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
    train, valid = splits.held_out_split(trained, _PILOT_FRACTIONS[name], _PILOT_SEED)
    write_jsonl(train, os.path.join(out, f"{name}_train.jsonl"))
    write_jsonl(valid, os.path.join(out, f"{name}_valid.jsonl"))
    print(f"{name}: pilot train {len(train):,}, pilot validation {len(valid):,} "
          f"(reported validation {len(reported):,}, excluded)")
    if name == "sst2":
      train, valid = sentence_split(trained, _SST2_SENTENCES, _PILOT_SEED)
      write_jsonl(train, os.path.join(out, "sst2_sentences_train.jsonl"))
      write_jsonl(valid, os.path.join(out, "sst2_sentences_valid.jsonl"))
      print(f"sst2_sentences: pilot train {len(train):,} phrases, pilot validation "
            f"{len(valid):,} whole sentences")


def spans(text: str) -> set[str]:
  """Every run of whole words of `text`."""
  words = text.split()
  return {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}


def sentence_split(recs, num_valid: int, seed: int):
  """(train, valid): `num_valid` random whole sentences, and the phrases that also occur
  outside them (in another whole sentence, or in none)."""
  texts = [" ".join(r.values["text"].split()) for r in recs]
  by_length = sorted(range(len(recs)), key=lambda i: -len(texts[i]))
  inside_longer = set()
  whole = []
  for i in by_length:
    if texts[i] not in inside_longer:
      whole.append(i)
      inside_longer |= spans(texts[i]) - {texts[i]}
  rng = np.random.default_rng(seed)
  valid_ids = set(rng.choice(whole, size=num_valid, replace=False).tolist())
  in_valid = set().union(*(spans(texts[i]) for i in valid_ids))
  in_kept = set().union(*(spans(texts[i]) for i in whole if i not in valid_ids))
  train = [r for i, (r, t) in enumerate(zip(recs, texts))
           if i not in valid_ids and (t in in_kept or t not in in_valid)]
  return train, [recs[i] for i in sorted(valid_ids)]


if __name__ == "__main__":
  main()
