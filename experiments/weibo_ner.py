"""Chinese named-entity recognition: Weibo NER (Peng and Dredze 2015, 2nd version), with and
without our own character-level masked-LM pretraining.

Data: weibo-ner in the data root (lm/data/data_root.py; `python -m lm.data.download weibo-ner`):
train 1,350 messages, dev 270; one character a line with its position in its word, `口0 腔1`,
read as the character with its place in its word (B/M/E/S) as a token type
(config.data.position_digits='segment'); IOB2 tags of 8 types, PER/ORG/LOC/GPE x NAM/NOM. The
test split is not in it: `lm.predict` tags a file in the same format.

  pretrain  masked LM on Chinese text of the data root (datasets cmrc2018, weibo-ner and
            zh-fortunes), one character a token: the
            distinct CMRC 2018 train contexts (1.2M characters), the Weibo training messages
            (75k), Debian fortunes-zh with its color codes removed (1.0M); no dev or test text.
            `python -m experiments.weibo_ner` writes them as text files to runs/zh_ner_corpus.
  finetune  the tagger on that encoder (needs --config.init_from=<the pretrain workdir>)
  scratch   the same tagger from random weights (its own character vocabulary)
  smoke     seconds (with any of them)

Commands (2-core CPU; times and F1 in BENCHMARKS.md "Issue 22"):
  python -m experiments.weibo_ner          # the pretraining text (~2 s)
  python -m lm.main --config=experiments/weibo_ner.py:pretrain --workdir=runs/weibo_pretrain
  python -m lm.main --config=experiments/weibo_ner.py:finetune --workdir=runs/weibo_ner \\
      --config.init_from=runs/weibo_pretrain
  python -m lm.predict --workdir=runs/weibo_ner \\
      --input=${LM_DATA_DIR:-../shared/data}/weibo-ner/weiboNER_2nd_conll.dev \\
      --output=runs/weibo_ner/dev.pred
Expected (2-core CPU): pretrain 32 min (masked-LM loss 5.57), finetune 5 min, dev entity F1
50.9 +- 2.0 over seeds 0-2; scratch 50.2 +- 0.3 (with position_digits='drop', the characters
alone: 47.2 +- 0.5 pretrained, 40.1 scratch). BENCHMARKS.md "Issue 22".
"""

import gzip
import json
import os
import re
import sys

from lm import cli, defaults
from lm.data import data_root, tagged
from lm.errors import UserError
from lm.experiment_args import parse_args, shrink_to_smoke

TRAIN = data_root.path("weibo-ner", "weiboNER_2nd_conll.train")
DEV = data_root.path("weibo-ner", "weiboNER_2nd_conll.dev")
CORPUS = "runs/zh_ner_corpus"  # `python -m experiments.weibo_ner` writes it.
_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def encoder(config) -> None:
  """The architecture pretraining and fine-tuning share (init_from checks it)."""
  config.model.update(causal=False,
                      num_layers=4,
                      num_heads=4,
                      embed_dim=256,
                      max_len=128,
                      positions="rope",
                      mlp="gelu_exact",
                      dropout=0.1)
  config.data.tokenizer = "char"


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("pretrain", "finetune", "scratch", "smoke"))
  config = defaults.base_config()
  encoder(config)
  stages = args & {"pretrain", "finetune", "scratch"} or ({"scratch"} if "smoke" in args else set())
  if len(stages) != 1:  # `smoke` alone is the tagger from scratch.
    raise UserError("--config=experiments/weibo_ner.py:STAGE needs one of pretrain, finetune, "
                    "scratch")
  stage, = stages
  if stage == "pretrain":
    pretrain(config)
  else:
    tagger(config)
    # finetune needs --config.init_from (scratch is the same tagger from random weights).
    config.init_required = stage == "finetune" and "smoke" not in args
  if "smoke" in args:
    shrink_to_smoke(config)
    config.model.max_len = 32
    if stage == "pretrain":  # Any Chinese text: the corpus may not be written yet.
      config.data.source = data_root.path("zh-fortunes", "tang300")
  return config


def pretrain(config) -> None:
  config.task.kind = "masked_lm"
  config.data.source = ",".join(f"{CORPUS}/{name}" for name in (
      "cmrc2018_contexts.txt", "weibo_train.txt", "fortunes.txt"))
  config.data.txt_unit = "line"  # Validation: 1% of the lines (paragraphs, poem lines).
  config.data.valid_fraction = 0.01
  config.model.dropout = 0.0
  # ~9M tokens (4 epochs of the 2.26M characters) in ~32 min on 2 cores. Characters alone
  # (position_digits='drop'), seed 0: 2,200 steps fine-tuned to 47.2 dev F1, 1,400 to 47.7,
  # 700 to 44.3; from scratch 40.1.
  config.train.update(steps=2200,
                      batch_size=32,
                      learning_rate=1e-3,
                      min_learning_rate=1e-4,
                      warmup_steps=100,
                      weight_decay=0.01,
                      b2=0.98,
                      eval_every=550,
                      eval_batches=4,
                      final_eval_batches=0,
                      checkpoint_every=550,
                      sample_prompt="")


def tagger(config) -> None:
  config.task.kind = "token_classification"
  config.data.source = TRAIN
  config.data.valid_source = DEV
  # The characters' places in their words as token types: dev F1 52.2 against 47.1 for the
  # characters alone ('drop'), seed 0, the same pretraining (BENCHMARKS.md "Issue 22").
  config.data.position_digits = "segment"
  # ~14 epochs; on dev (seed 0) batch 32 at 5e-4 peaked at 47.7 F1, batch 16 at 47.3, lower
  # rates (2e-4 with layer-wise decay 0.8: 43.2) and higher ones (1e-3: 43.9) did worse.
  config.train.update(steps=600,
                      batch_size=32,
                      eval_batch_size=64,
                      learning_rate=5e-4,
                      min_learning_rate=0.0,
                      schedule="linear",
                      warmup_steps=100,
                      weight_decay=0.01,
                      b2=0.98,
                      eval_every=100,
                      checkpoint_every=600,
                      keep_checkpoints=1,
                      sample_prompt="")


def cmrc_contexts(path: str) -> list[str]:
  with gzip.open(path, "rt", encoding="utf-8") as f:
    articles = json.load(f)["data"]
  seen = dict.fromkeys(p["context"].strip() for a in articles for p in a["paragraphs"])
  return [context for context in seen if context]


def weibo_messages(path: str) -> list[str]:
  """The messages of a Weibo NER file, characters without their position digits."""
  return ["".join(s.tokens) for s in tagged.read_tagged(path, position_digits="drop").sentences]


def fortune_entries(paths: list[str]) -> list[str]:
  entries = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      text = _ESCAPE.sub("", f.read())
    entries += [e.strip() for e in re.split(r"^%$", text, flags=re.M) if e.strip()]
  return entries


def write_corpus(out: str = CORPUS) -> None:
  """Writes the pretraining text files (see the module docstring) to `out`."""
  os.makedirs(out, exist_ok=True)
  fortunes = [data_root.require("zh-fortunes", name) for name in ("chinese", "tang300", "song100")]
  parts = {
      "cmrc2018_contexts.txt":
          "\n".join(cmrc_contexts(data_root.require("cmrc2018", "cmrc2018_train.json.gz"))),
      "weibo_train.txt": "\n".join(weibo_messages(TRAIN)),
      "fortunes.txt": "\n\n".join(fortune_entries(fortunes)),
  }
  for name, text in parts.items():
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
      f.write(text + "\n")
    print(f"{os.path.join(out, name)}: {len(text):,} characters")


if __name__ == "__main__":
  try:
    write_corpus(sys.argv[1] if len(sys.argv) > 1 else CORPUS)
  except UserError as e:  # A missing dataset names the command that gets it.
    cli.fail(str(e))
