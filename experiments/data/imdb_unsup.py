"""Prepare the 50,000 unlabeled IMDB reviews (Maas et al. 2011, `aclImdb/train/unsup`) for
pretraining: read in place from the tarball as shipped (one review per member), strip the
`<br />` markup, normalize, drop near-empty reviews, remove exact and near-duplicate reviews,
hold out 2% for validation, train an 8k BPE SentencePiece and write memory-mapped shards. The
tarball is in the data root (lm/data/data_root.py); `python -m lm.data.download imdb` gets it.

  python -m lm.data.prepare --config=experiments/data/imdb_unsup.py --workdir=runs/imdb_unsup_data
  python -m lm.main --config=experiments/imdb.py:pretrain --workdir=runs/imdb_pretrain \\
      --config.data.prepared=runs/imdb_unsup_data

Arguments (comma-separated): `raw` (no cleaning, no filters, no dedup: the ablation's
baseline), `nodedup` (cleaning and filters, no dedup), `smoke` (reviews 10000-10099 only, a
small vocabulary: seconds). Expected (2-core CPU, BENCHMARKS.md "Issue 28", third session):
about 64 s with one worker and 39-41 s with --processes=2 (medians of 3; the VM's speed varies
by +-15%); 494 exact and 41 near-duplicate reviews removed,
48,397 train / 950 valid reviews written, 16.3M / 0.31M tokens, every review round-trips
through the tokenizer.
"""

from lm.data import data_root
from lm.data.prepare import config as prepare_config
from lm.experiment_args import parse_args

DATA = data_root.root()
UNSUP = data_root.path("imdb", "aclImdb_unsup.tar.gz") + ":aclImdb/train/unsup/*.txt"


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("raw", "nodedup", "smoke"))
  config = prepare_config.base_config()
  config.inputs = UNSUP
  config.valid_fraction = 0.02
  # Reviews are at least ~10 words; Gopher's thresholds for the rest.
  config.quality.update(min_words=5, max_symbol_ratio=0.1, min_alpha_word_share=0.8,
                        max_duplicate_line_share=0.3, max_top_ngram_share=0.2,
                        max_duplicate_ngram_share=0.15)
  config.tokenizer.update(kind="sentencepiece", vocab_size=8000, model_type="bpe",
                          training_documents=20000)
  if "raw" in args:
    raw(config)
  if "raw" in args or "nodedup" in args:
    config.dedup.update(exact=False, near=False)
  if "smoke" in args:
    config.inputs = UNSUP.replace("/*.txt", "/100[0-9][0-9]_*.txt")
    config.valid_fraction = 0.1
    config.tokenizer.vocab_size = 400
  return config


def raw(config) -> None:
  """No cleaning and no quality filters: the text as shipped."""
  config.clean.update(escapes=False, markup=False, nfkc=False, control=False, whitespace=False)
  for rule in ("min_words", "max_symbol_ratio", "min_alpha_word_share",
               "max_duplicate_line_share", "max_top_ngram_share", "max_duplicate_ngram_share"):
    config.quality[rule] = type(config.quality[rule])(0)
