"""Ablation (c): width and depth scaling, with a loss-vs-compute plot and a fitted power law.

Four sizes of the character-level Shakespeare decoder (experiments/shakespeare_char.py, its
`cpu` recipe: context 64, batch 12, lr 1e-3 -> 1e-4; 1000 steps), growing width and depth
together (head width 32), each trained on the same 768k tokens with every seed:

  L2-d64    2 layers, width  64,  2 heads
  L3-d96    3 layers, width  96,  3 heads
  L4-d128   4 layers, width 128,  4 heads (the cpu recipe)
  L5-d160   5 layers, width 160,  5 heads

Training compute C = tokens x FLOPs per token (6 N + attention, lm/training/flops.py); the
sweep fits eval/bpb = a C^-b to every run (--scaling: results.md, scaling.png). With tokens
fixed, C grows with model size only: this is the model-size axis of Kaplan et al. (2020) at a
fixed data budget, not a compute-optimal frontier (Hoffmann et al. 2022).

Command (4 sizes x 3 seeds; results in experiments/results/scaling/):
  python -m lm.sweep --config=experiments/ablate_scaling.py:cpu --workdir=runs/ablate_scaling \
      --seeds=3 --metric=eval/bpb --parallel=2 --scaling
One run by hand: python -m lm.main --config=experiments/ablate_scaling.py:cpu --workdir=DIR \
      --config.model.num_layers=2 --config.model.embed_dim=64 --config.model.num_heads=2
Expected (2-core CPU): from ~20 s (L2-d64) to ~2 minutes (L5-d160) per run alone; the
measured table and fit are in experiments/results/scaling/.
"""

from experiments import shakespeare_char

SIZES = ((2, 64), (3, 96), (4, 128), (5, 160))  # (layers, width)
HEAD_DIM = 32


# Half the cpu recipe's 2000 steps: 12 runs fit the CPU budget (the step is all that changes).
STEPS = 1000


def get_config(arg: str | None = None):
  return shakespeare_char.get_config_with_steps(arg, STEPS)


def sweep(arg: str | None = None) -> list[dict]:
  del arg  # The same sizes for every recipe.
  return [{
      "name": f"L{layers}-d{width}",
      "model.num_layers": layers,
      "model.embed_dim": width,
      "model.num_heads": width // HEAD_DIM,
  } for layers, width in SIZES]
