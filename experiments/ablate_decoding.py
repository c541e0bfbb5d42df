"""Ablation: how to decode the Multi30k en->de model: greedy vs beam 4 and 8, length penalty 0.6
and 1.0, over 3 training seeds.

The variants decode the same trained models, so the runs only evaluate: config.train.steps=0
with config.init_from=runs/multi30k_seeds/baseline/seed{seed} (`{seed}` is each run's own
config.seed), the cpu recipe of experiments/multi30k.py trained once per seed. Each run decodes
all 1,014 val sentences and scores sacreBLEU and chrF (eval/bleu, eval/chrf); eval/loss is the
same in every variant of a seed (teacher forcing does not decode).

  greedy           beam 1
  beam4_lp0.6      beam 4, GNMT length penalty alpha 0.6 (the recipe's setting)
  beam4_lp1.0      beam 4, alpha 1.0
  beam8_lp0.6      beam 8, alpha 0.6
  beam8_lp1.0      beam 8, alpha 1.0

Commands: the 3 seeds (~52 min each on a 2-core CPU; skip if runs/multi30k_seeds exists), then
the decoding sweep (one lm.sweep; results in its workdir's results.md and plots):
  XLA_FLAGS=--xla_force_host_platform_device_count=1 python -m lm.sweep \\
      --config=experiments/multi30k.py:cpu --workdir=runs/multi30k_seeds --seeds=3 \\
      --metric=eval/bleu
  XLA_FLAGS=--xla_force_host_platform_device_count=1 python -m lm.sweep \\
      --config=experiments/ablate_decoding.py --workdir=runs/ablate_decoding --seeds=3 \\
      --metric=eval/bleu
One run by hand (what the sweep runs, seed 0, beam 8):
  python -m lm.main --config=experiments/ablate_decoding.py --workdir=runs/decode_beam8 \\
      --config.seed=0 --config.task.beam_size=8
Expected (2-core CPU): each run 1-3 minutes (greedy fastest, beam 8 slowest); the measured table
is in BENCHMARKS.md "Issue 24" (beam 4 about +1 BLEU over greedy on seed 0).
"""

from experiments import multi30k
from lm.experiment_args import parse_args

TRAINED = "runs/multi30k_seeds/baseline/seed{seed}"


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("smoke",))
  config = multi30k.get_config("cpu,smoke" if "smoke" in args else "cpu")
  if "smoke" not in args:  # Smoke trains its own tiny model instead.
    config.init_from = TRAINED
    config.train.update(steps=0, warmup_steps=0)
  return config


def sweep(arg: str | None = None) -> list[dict]:
  del arg  # The same variants for every recipe.
  variants = [{"name": "greedy", "task.beam_size": 1}]
  for beam in (4, 8):
    for alpha in (0.6, 1.0):
      variants.append({"name": f"beam{beam}_lp{alpha}", "task.beam_size": beam,
                       "task.length_penalty": alpha})
  return variants
