"""Chinese named-entity recognition: Weibo NER (Peng and Dredze 2015, 2nd version), with and
without our own character-level masked-LM pretraining.

Data: ../shared/data/weibo-ner (train 1,350 messages, dev 270; one character a line with its
word-position digit, `口0`, read as the character alone; IOB2 tags of 8 types, PER/ORG/LOC/GPE
x NAM/NOM). The test split is not in ../shared: `lm.predict` tags a file in the same format.

  pretrain  masked LM on the Chinese text of ../shared/data, one character a token: CMRC 2018
            train contexts, the Weibo training messages, Debian fortunes-zh (written by
            experiments/data/zh_ner_corpus.py; no dev or test text)
  finetune  the tagger on that encoder (needs --config.init_from=<the pretrain workdir>)
  scratch   the same tagger from random weights (its own character vocabulary)
  smoke     seconds (with any of them)

Commands (2-core CPU; times and F1 in BENCHMARKS.md "Issue 22"):
  python experiments/data/zh_ner_corpus.py
  python -m lm.main --config=experiments/weibo_ner.py:pretrain --workdir=runs/weibo_pretrain
  python -m lm.main --config=experiments/weibo_ner.py:finetune --workdir=runs/weibo_ner \\
      --config.init_from=runs/weibo_pretrain
  python -m lm.predict --workdir=runs/weibo_ner \\
      --input=../shared/data/weibo-ner/weiboNER_2nd_conll.dev --output=runs/weibo_ner/dev.pred
"""

from lm import defaults
from lm.errors import UserError
from lm.experiment_args import parse_args, shrink_to_smoke

DATA = "../shared/data/weibo-ner"
TRAIN = f"{DATA}/weiboNER_2nd_conll.train"
DEV = f"{DATA}/weiboNER_2nd_conll.dev"
CORPUS = "runs/zh_ner_corpus"  # experiments/data/zh_ner_corpus.py writes it.


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
  stages = args & {"pretrain", "finetune", "scratch"}
  if len(stages) != 1:
    raise UserError("--config=experiments/weibo_ner.py:STAGE needs one of pretrain, finetune, "
                    "scratch")
  stage, = stages
  if stage == "pretrain":
    pretrain(config)
  else:
    tagger(config)
  if "smoke" in args:
    shrink_to_smoke(config)
    config.model.max_len = 32
    if stage == "pretrain":
      config.data.source = TRAIN.replace(".train", ".dev")
      config.data.txt_unit = "line"
  return config


def pretrain(config) -> None:
  config.task.kind = "masked_lm"
  config.data.source = ",".join(f"{CORPUS}/{name}" for name in (
      "cmrc2018_contexts.txt", "weibo_train.txt", "fortunes.txt"))
  config.data.valid_fraction = 0.01
  config.model.dropout = 0.0
  config.train.update(steps=3000,
                      batch_size=64,
                      learning_rate=1e-3,
                      min_learning_rate=1e-4,
                      warmup_steps=100,
                      weight_decay=0.01,
                      b2=0.98,
                      eval_every=500,
                      eval_batches=4,
                      final_eval_batches=0,
                      checkpoint_every=500,
                      sample_prompt="")


def tagger(config) -> None:
  config.task.kind = "token_classification"
  config.data.source = TRAIN
  config.data.valid_source = DEV
  config.data.position_digits = "drop"
  config.train.update(steps=1700,
                      batch_size=16,
                      eval_batch_size=64,
                      learning_rate=5e-4,
                      min_learning_rate=0.0,
                      schedule="linear",
                      warmup_steps=100,
                      weight_decay=0.01,
                      b2=0.98,
                      eval_every=170,
                      checkpoint_every=1700,
                      keep_checkpoints=1,
                      sample_prompt="")
