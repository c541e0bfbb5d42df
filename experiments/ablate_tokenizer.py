"""Ablation (d): characters against SentencePiece BPE at three vocabulary sizes, in bits per byte.

The character-level Shakespeare decoder of experiments/shakespeare_char.py (its `cpu` recipe:
4 layers, width 128, context 64 tokens, batch 12; 1000 steps), with only the tokenizer
changed. Every variant trains on the same number of tokens (so a BPE model sees more text per
step: the usual trade of a larger vocabulary), and is compared in bits per byte on the same
validation text (total NLL in bits over its UTF-8 bytes), the unit that does not depend on the
tokenizer. No byte fallback: the 65 characters are all in every vocabulary.

  char      the 65 characters (+ 7 special ids)
  bpe512    SentencePiece BPE, 512 pieces (special ids included)
  bpe1024   1,024 pieces
  bpe4096   4,096 pieces (the embedding grows by 0.5M parameters)

Command (4 variants x 3 seeds; results in experiments/results/tokenizer/):
  python -m lm.sweep --config=experiments/ablate_tokenizer.py:cpu --workdir=runs/ablate_tokenizer \
      --seeds=3 --metric=eval/bpb --parallel=2
One run by hand: python -m lm.main --config=experiments/ablate_tokenizer.py:cpu --workdir=DIR \
      --config.data.tokenizer=sentencepiece --config.data.vocab_size=1024
Expected (2-core CPU): ~1-2 minutes per run alone; the measured table is in
experiments/results/tokenizer/.
"""

from experiments import shakespeare_char

BPE_VOCAB_SIZES = (512, 1024, 4096)


# Half the cpu recipe's 2000 steps: 12 runs fit the CPU budget (the step is all that changes).
STEPS = 1000


def get_config(arg: str | None = None):
  return shakespeare_char.get_config_with_steps(arg, STEPS)


def sweep(arg: str | None = None) -> list[dict]:
  del arg  # The same tokenizers for every recipe.
  return [{"name": "char"}] + [{
      "name": f"bpe{size}",
      "data.tokenizer": "sentencepiece",
      "data.model_type": "bpe",
      "data.vocab_size": size,
  } for size in BPE_VOCAB_SIZES]
