"""Ablation (e): LayerNorm vs RMSNorm, learned vs rotary positions, GELU vs SwiGLU.

One change at a time from the character-level Shakespeare model of
experiments/shakespeare_char.py (its `cpu` recipe by default: nanoGPT's 4 layers, width 128,
context 64, 2000 steps; rotary positions, LayerNorm, exact GELU), each variant trained with
every seed and evaluated on the whole validation split (bits per byte and loss):

  baseline   rotary positions, LayerNorm, GELU MLP (4 x width)
  rmsnorm    RMSNorm instead of LayerNorm (Zhang & Sennrich 2019)
  learned    a learned position table instead of rotary embeddings (GPT-2)
  swiglu     SwiGLU MLP (Shazeer 2020), hidden width 8/3 x width (341 at width 128), so its three
             matrices hold as many parameters as the GELU MLP's two (130,944 vs 131,072)

Command (all variants x 3 seeds; results in experiments/results/architecture/):
  python -m lm.sweep --config=experiments/ablate_architecture.py:cpu \
      --workdir=runs/ablate_architecture --seeds=3 --metric=eval/bpb --parallel=2
One run of it by hand (what the sweep starts for variant rmsnorm, seed 1):
  python -m lm.main --config=experiments/ablate_architecture.py:cpu \
      --workdir=runs/ablate_architecture/rmsnorm/seed1 --config.seed=1 --config.model.norm=rmsnorm
Expected: each run ~2 min alone on the 2-core CPU; the baseline reaches eval/loss ~1.78
(experiments/shakespeare_char.py); the measured table is experiments/results/architecture/.
"""

from experiments import shakespeare_char


def get_config(arg: str | None = None):
  return shakespeare_char.get_config(arg)


def sweep(arg: str | None = None) -> list[dict]:
  # Three d x h matrices hold as many parameters as the GELU MLP's two d x 4d: h = 8d/3.
  swiglu_hidden = 8 * get_config(arg).model.embed_dim // 3
  return [
      {"name": "baseline"},
      {"name": "rmsnorm", "model.norm": "rmsnorm"},
      {"name": "learned", "model.positions": "learned"},
      {"name": "swiglu", "model.mlp": "swiglu", "model.mlp_dim": swiglu_hidden},
  ]
