"""Character-level GPT on Tiny Shakespeare: nanoGPT's two published recipes.

Same split as nanoGPT (first 90% of the text for training, last 10% for validation) and the
same hyperparameters. The one architectural change is rotary position embeddings (Su et al.
2021) instead of a learned position table; the arg `learned_positions` restores nanoGPT's
architecture exactly (used for the side-by-side comparison with PyTorch in BENCHMARKS.md).
The final validation loss is measured on the whole validation split.

  default (GPU recipe): 6 layers, 6 heads, width 384, context 256, batch 64, 5000 steps,
      dropout 0.2. nanoGPT reports validation loss 1.4697 on one A100.
  cpu: 4 layers, 4 heads, width 128, context 64, batch 12, 2000 steps, lr 1e-3 -> 1e-4,
      warmup 100, dropout 0, 10 steps per jitted call. nanoGPT reports 1.88 in ~3 min on a
      laptop CPU.
  smoke: shrinks either to a few seconds (for tests).

Command:
  python -m lm.main --config=experiments/shakespeare_char.py:cpu --workdir=runs/shakespeare_cpu
Expected (2-core CPU, BENCHMARKS.md): cpu reaches eval/loss 1.77-1.79 at step 2000 in ~1 minute;
with learned_positions ~1.89 (PyTorch eager, same recipe: ~1.91).
"""

from lm import defaults
from lm.data import data_root
from lm.experiment_args import parse_args, shrink_to_smoke


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("cpu", "smoke", "learned_positions"))
  config = defaults.base_config("tiny" if "cpu" in args else "small")
  config.data.source = data_root.vendored("tinyshakespeare", "input.txt")
  config.data.tokenizer = "char"
  # nanoGPT's vocabulary: the 65 characters of the text, no byte ids for unseen ones.
  config.data.byte_fallback = False
  config.data.valid_fraction = 0.1
  config.model.positions = "learned" if "learned_positions" in args else "rope"
  # nanoGPT's recipe: exact GELU, weight decay on every matrix including the embeddings.
  config.model.mlp = "gelu_exact"
  config.train.decay_embeddings = True
  config.train.learning_rate = 1e-3
  config.train.min_learning_rate = 1e-4
  config.train.warmup_steps = 100
  config.train.b2 = 0.99
  config.train.eval_every = 250
  # Periodic evaluations on 4 x 64 windows (~15% of the split), the final one on all of it.
  config.train.eval_batches = 4
  if "cpu" in args:
    config.train.steps = 2000
    config.train.batch_size = 12
    config.model.dropout = 0.0
    # 10 steps per jitted call: a step of this small model is ~25 ms on 2 cores, of which the
    # host's dispatch is several (BENCHMARKS.md "Issue 3").
    config.train.steps_per_call = 10
  else:
    config.train.steps = 5000
    config.train.batch_size = 64
    config.model.dropout = 0.2
  if "smoke" in args:
    shrink_to_smoke(config)
  return config


def get_config_with_steps(arg: str | None, steps: int):
  """get_config(arg) trained for `steps` steps (smoke keeps its own few), for ablations that
  shorten the recipe to fit more runs in a CPU budget."""
  config = get_config(arg)
  if "smoke" not in parse_args(arg, allowed=("cpu", "smoke", "learned_positions")):
    config.train.steps = steps
  return config
