"""Chinese extractive question answering: CMRC 2018 (Cui et al. 2019), with and without our own
character-level masked-LM pretraining.

Data: cmrc2018 in the data root (lm/data/data_root.py): train 10,142 questions on 2,403
paragraphs, dev 3,219 questions with 3 reference answers each (SQuAD v1.1 JSON). The trial set
(the held-out test) is not in it: `lm.predict` answers a file in the same format and writes
{id: answer}, as the official script and `../shared/tools/score.py cmrc` read it. Dev answers
whose offset is wrong are relocated or skipped as lm/data/qa_examples.py says; every dev
question is scored against its 3 references (CMRC 2018 EM and F1: characters, punctuation
removed).

  pretrain  masked LM on Chinese text of the data root, one character a token: the distinct
            CMRC 2018 train contexts, the Weibo NER training messages and Debian fortunes-zh
            (experiments/weibo_ner.py writes them: `python -m experiments.weibo_ner`); no dev
            text
  finetune  the reader on that encoder (needs --config.init_from=<the pretrain workdir>)
  scratch   the same reader from random weights (its own character vocabulary)
  smoke     seconds (with any of them)

Commands (2-core CPU):
  python -m experiments.weibo_ner          # the pretraining text (~2 s)
  python -m lm.main --config=experiments/cmrc2018.py:pretrain --workdir=runs/cmrc_pretrain
  python -m lm.main --config=experiments/cmrc2018.py:finetune --workdir=runs/cmrc2018 \\
      --config.init_from=runs/cmrc_pretrain
  python -m lm.predict --workdir=runs/cmrc2018 \\
      --input=${LM_DATA_DIR:-../shared/data}/cmrc2018/cmrc2018_dev.json \\
      --output=runs/cmrc2018/dev_predictions.json
Expected (2-core CPU): pretrain 32 min (masked-LM loss 5.57), finetune 19 min; dev (all 3,219
questions, lm.predict) EM 30.6 +- 1.3, F1 53.1 +- 1.3 over seeds 0-2 (54.6, 52.8, 52.0);
scratch (seed 0) EM 11.2, F1 33.1. BENCHMARKS.md "Issue 25".
"""

from lm import defaults
from lm.data import data_root
from lm.errors import UserError
from lm.experiment_args import parse_args, shrink_to_smoke

from experiments import weibo_ner

TRAIN = data_root.path("cmrc2018", "cmrc2018_train.json.gz")
DEV = data_root.path("cmrc2018", "cmrc2018_dev.json")


def encoder(config) -> None:
  """The architecture pretraining and fine-tuning share (init_from checks it): Weibo NER's
  encoder, whose rotary positions let the reader read windows of 256 characters where
  pretraining read 128."""
  weibo_ner.encoder(config)


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("pretrain", "finetune", "scratch", "smoke"))
  config = defaults.base_config()
  encoder(config)
  stages = args & {"pretrain", "finetune", "scratch"} or ({"scratch"} if "smoke" in args else set())
  if len(stages) != 1:  # `smoke` alone is the reader from scratch.
    raise UserError("--config=experiments/cmrc2018.py:STAGE needs one of pretrain, finetune, "
                    "scratch")
  stage, = stages
  if stage == "pretrain":  # The same run as experiments/weibo_ner.py:pretrain.
    weibo_ner.pretrain(config)
  else:
    reader(config)
    config.init_required = stage == "finetune" and "smoke" not in args
  if "smoke" in args:
    shrink_to_smoke(config)
    config.model.max_len = 48
    config.task.update(doc_stride=16, max_question_tokens=12)
    config.train.eval_examples = 16
    if stage == "pretrain":  # Any Chinese text: the corpus may not be written yet.
      config.data.source = data_root.path("zh-fortunes", "tang300")
  return config


def reader(config) -> None:
  config.task.kind = "extractive_qa"
  config.data.source = TRAIN
  config.data.valid_source = DEV
  config.model.max_len = 256
  # question_match: context characters that occur in the question get their own token type
  # (DrQA's exact-match feature); dev F1 44.1 against 13.0 without it after 150 / 300 steps.
  config.task.update(doc_stride=128, max_question_tokens=48, max_answer_length=50,
                     question_match=True)
  # 300 steps of 32 windows: ~0.27 epoch of the 36k training windows in ~17 min; the
  # evaluations on the first 800 dev questions (the full dev: lm.predict, as the docstring).
  config.train.update(steps=300,
                      batch_size=32,
                      eval_batch_size=64,
                      learning_rate=5e-4,
                      min_learning_rate=0.0,
                      schedule="linear",
                      warmup_steps=150,
                      weight_decay=0.01,
                      b2=0.98,
                      eval_every=150,
                      eval_examples=800,
                      checkpoint_every=300,
                      keep_checkpoints=1,
                      sample_prompt="")
