"""Chinese end to end (issue 9): pretrain a small GPT on Chinese prose and poems, write Tang-style
poems from a title, and classify passages by collection.

Data: zh-fortunes in the data root (lm/data/data_root.py; `python -m lm.data.download
zh-fortunes`; Debian fortunes-zh, GPL-3.0): `chinese` (5,263 entries of
prose with some English), `tang300` (313 Tang poems), `song100` (96 Song ci), as split by
txt_unit='entry' (entries between lines holding `%`); terminal color codes around titles and
authors.

  prepare   (for `python -m lm.data.prepare`) entries cleaned (escapes, control characters,
            whitespace; no NFKC, which would turn full-width Chinese punctuation into ASCII),
            deduplicated, 5% held out, SentencePiece BPE with 8,000 pieces, character coverage
            0.9995 and byte fallback (no character is ever <unk>)
  pretrain  (default) causal LM on the prepared corpus: 4 layers, width 256, context 128
  classify  3-way classifier (chinese / song100 / tang300, labels from the file names) on
            single entries, cleaned the same way, from the pretrained run (config.init_from);
            10% of the entries held out (seeded); class weights against the 55:3:1 imbalance
  smoke     shrinks pretrain or classify to seconds (reads the raw files, no prepared corpus)

Commands (2-core CPU; times and numbers in BENCHMARKS.md "Issue 9"):
  python -m lm.data.prepare --config=experiments/zh_poetry.py:prepare --workdir=runs/zh_data
  python -m lm.main --config=experiments/zh_poetry.py --workdir=runs/zh_pretrain
  python -m lm.generate --workdir=runs/zh_pretrain --prompt=$'《春望》\\n' --max_new_tokens=60
  python -m lm.main --config=experiments/zh_poetry.py:classify --workdir=runs/zh_classify \\
      --config.init_from=runs/zh_pretrain
Expected (2-core CPU shared with other jobs, load average 4-6): prepare 9 s, pretrain 500 steps
in 16.6 min to validation 1.94 bits per UTF-8 byte, classify 100 steps in 3.7 min to accuracy
99.8% (majority class: 94.5%) and macro-F1 0.957 (majority class: 0.324) on 567 held-out
entries. The title prompt needs its newline: the poems start "《title》\\n作者：...".
"""

from lm import defaults
from lm.data import data_root
from lm.errors import UserError
from lm.experiment_args import parse_args, shrink_to_smoke

FILES = ("chinese", "tang300", "song100")
SOURCE = ",".join(data_root.path("zh-fortunes", name) for name in FILES)
PREPARED = "runs/zh_data"  # The --workdir of the prepare stage.
# Record cleaning for the classifier: what the prepare stage does to the pretraining text.
CLEAN = "escapes,control,whitespace"
# Title prompt of the samples: a Tang poem by Du Fu ("Spring View"), then a newline.
PROMPT = "《春望》\n"


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("prepare", "pretrain", "classify", "smoke"))
  stages = args & {"prepare", "pretrain", "classify"}
  if len(stages) > 1:
    raise UserError("--config=experiments/zh_poetry.py:STAGE takes one of prepare, pretrain,"
                    f" classify; got {', '.join(sorted(stages))}")
  if "prepare" in stages:
    return prepare_config()
  config = defaults.base_config()
  architecture(config)
  if "classify" in stages:
    classify(config)
    config.init_required = "smoke" not in args  # Needs --config.init_from (the pretraining).
  else:
    pretrain(config)
  if "smoke" in args:
    smoke(config)
  return config


def tokenizer_fields() -> dict:
  """SentencePiece for CJK: 0.9995 of the characters get pieces, the rarest fall back to bytes."""
  return dict(vocab_size=8000, model_type="bpe", character_coverage=0.9995, byte_fallback=True)


def architecture(config) -> None:
  """The decoder shared by pretraining and the classifier (init_from checks it)."""
  config.model.update(num_layers=4,
                      num_heads=4,
                      embed_dim=256,
                      max_len=128,
                      positions="rope",
                      dropout=0.0)
  config.data.tokenizer = "sentencepiece"
  config.data.update(tokenizer_fields())


def pretrain(config) -> None:
  config.task.kind = "causal_lm"
  config.data.prepared = PREPARED
  # Used only without a prepared corpus (smoke): the same entries, uncleaned.
  config.data.source = SOURCE
  config.data.txt_unit = "entry"
  config.data.valid_fraction = 0.05
  config.train.update(steps=500,
                      batch_size=16,
                      learning_rate=2e-3,
                      min_learning_rate=2e-4,
                      warmup_steps=50,
                      weight_decay=0.1,
                      eval_every=250,
                      eval_batches=8,
                      final_eval_batches=0,
                      checkpoint_every=500,
                      keep_checkpoints=1,
                      log_every=100,
                      sample_prompt=PROMPT,
                      sample_tokens=60)


def classify(config) -> None:
  config.task.kind = "classification"
  config.task.pooling = "last"  # A decoder's last token has read the whole passage.
  config.data.source = SOURCE
  config.data.txt_unit = "entry"
  config.data.label_field = "@file"
  config.data.labels = "chinese,tang300,song100"
  config.data.clean = CLEAN
  config.data.valid_fraction = 0.1
  # Inverse class frequency (5,263 / 313 / 96 entries as read), scaled so the prose weighs 1.
  config.task.class_weights = "1,16.8,54.8"
  config.train.update(steps=100,
                      batch_size=32,
                      learning_rate=5e-4,
                      min_learning_rate=0.0,
                      schedule="linear",
                      warmup_steps=10,
                      weight_decay=0.01,
                      eval_every=50,
                      eval_batch_size=128,
                      checkpoint_every=100,
                      keep_checkpoints=1,
                      log_every=50,
                      sample_prompt="")


def prepare_config():
  """The `python -m lm.data.prepare` config of the pretraining corpus."""
  from lm.data.prepare import config as prepare  # pylint: disable=g-import-not-at-top
  c = prepare.base_config()
  c.inputs = SOURCE
  c.valid_fraction = 0.05
  c.reader.txt_unit = "entry"
  c.clean.markup = False  # No HTML here; "<" and "&" are text.
  c.clean.nfkc = False  # Keeps full-width punctuation (，：！) as written.
  c.tokenizer.kind = "sentencepiece"
  c.tokenizer.update(tokenizer_fields())
  c.tokenizer.training_documents = 0
  return c


def smoke(config) -> None:
  shrink_to_smoke(config)
  config.model.max_len = 32
  config.data.prepared = ""
  config.data.character_coverage = 0.98  # About 2,900 characters: a vocabulary of 4,000.
  config.data.vocab_size = 4000
  config.train.sample_tokens = 8
