"""The config of `python -m lm.data.prepare`: every key with its meaning, and its checks.

Experiment files in `experiments/data/` start from `base_config()` and change a few fields.
"""

import math
from typing import Any

import ml_collections

from lm.data import augment, text_files, tokenizers

from lm.data.prepare import cleaning, contamination, dedup
from lm.data.sentencepiece_tokenizer import MODEL_TYPES
from lm.errors import UserError


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Seed of the held-out split, tokenizer sampling and augmentation.
  c.seed = 0
  # The corpus: comma-separated files, globs, directories (every file below), tar archives as
  # 'PATH.tar.gz:MEMBER_GLOB' (read in place, one document per member) or 'tfds:NAME'.
  # Formats by extension as in training: .txt (see reader.txt_unit), .jsonl, .csv, .tsv, .gz.
  c.inputs = ""
  # Evaluation text in the same forms; '' holds out valid_fraction of the documents (chosen by
  # a hash of their text, so the split does not depend on the number of processes).
  c.valid_inputs = ""
  c.valid_fraction = 0.01
  # TFDS splits of inputs and valid_inputs, and where TFDS datasets are prepared ('' = default).
  c.train_split = "train"
  c.valid_split = "validation"
  c.tfds_data_dir = ""

  # How documents are read (the same options as config.data in training).
  c.reader = ml_collections.ConfigDict()
  # JSONL key / CSV or TSV column / TFDS feature holding the text.
  c.reader.text_field = "text"
  # A document in a plain-text file: 'file', 'line', 'paragraph' or 'entry' (between lines
  # holding entry_separator, as in fortune(6) files).
  c.reader.txt_unit = "file"
  c.reader.entry_separator = text_files.DEFAULT_ENTRY_SEPARATOR
  # Undecodable UTF-8: 'strict' (an error naming file and line) or 'replace' (U+FFFD).
  c.reader.encoding_errors = "strict"

  # Cleaning steps (lm/data/prepare/cleaning.py), each counted in the report.
  c.clean = ml_collections.ConfigDict()
  # Terminal escape sequences (ESC[32m ...).
  c.clean.escapes = True
  # HTML/XML tags (<br /> becomes a newline) and character references (&amp;).
  c.clean.markup = True
  # Unicode NFKC normalization (full-width forms to ASCII, ligatures split).
  c.clean.nfkc = True
  # Control characters other than tab and newline.
  c.clean.control = True
  # Spaces and blank lines collapsed, the text stripped.
  c.clean.whitespace = True
  # Lower-casing and stop-word removal ('' = none, 'english', 'chinese' (removed as whole
  # jieba words) or comma-separated words): for classic bag-of-words baselines, not for
  # language-model pretraining.
  c.clean.lowercase = False
  c.clean.stopwords = ""

  # Quality filters in the style of Gopher (Rae et al. 2021) and C4 (Raffel et al. 2020); 0
  # switches a rule off. "Words" are whitespace-separated tokens, with every CJK/kana/hangul
  # character counted as one word, so the rules also work on text without spaces.
  c.quality = ml_collections.ConfigDict()
  # Bounds on characters and words per document (after cleaning).
  c.quality.min_chars = 1
  c.quality.max_chars = 0
  c.quality.min_words = 0
  c.quality.max_words = 0
  # Gopher: at most 0.1 '#' or ellipsis symbols per word.
  c.quality.max_symbol_ratio = 0.0
  # Gopher: at least 0.8 of the words hold a letter (of any script).
  c.quality.min_alpha_word_share = 0.0
  # Gopher: at most 0.3 of the non-blank lines repeat an earlier line.
  c.quality.max_duplicate_line_share = 0.0
  # Gopher: the most frequent word n-gram (n = top_ngram_size) covers at most this share of
  # the characters of all words.
  c.quality.top_ngram_size = 2
  c.quality.max_top_ngram_share = 0.0
  # Gopher: word n-grams (n = duplicate_ngram_size) that occur more than once cover at most
  # this share of the characters.
  c.quality.duplicate_ngram_size = 5
  c.quality.max_duplicate_ngram_share = 0.0

  # Deduplication (lm/data/prepare/dedup.py), after cleaning, over all processes' documents; the
  # first document (in input order) of a group is kept.
  c.dedup = ml_collections.ConfigDict()
  # Exact: identical text after normalization (NFKC, case, whitespace; punctuation counts).
  c.dedup.exact = True
  # Near: MinHash + LSH, estimated Jaccard similarity of shingle sets >= near_threshold (the
  # default 0.4 finds >= 95% of copies with 5% of the words edited at precision 1.0 on real
  # text; 0.8 finds almost none of them: BENCHMARKS.md, lm/data/prepare/dedup.py).
  c.dedup.near = True
  c.dedup.near_threshold = dedup.DEFAULT_THRESHOLD
  c.dedup.num_perm = dedup.DEFAULT_NUM_PERM
  # LSH bands (0 = chosen from near_threshold and num_perm) and the MinHash seed.
  c.dedup.lsh_bands = 0
  c.dedup.seed = 0
  # Shingles: 'word' n-grams, 'char' n-grams (for scripts without spaces) or 'auto' (each
  # character of a no-space script is a unit, other text is split into words);
  # shingle_size 0 = the unit's default n.
  c.dedup.shingle_unit = "auto"
  c.dedup.shingle_size = 0
  # Also drop training documents that duplicate (exactly or nearly) an evaluation document.
  c.dedup.against_valid = True
  # Example duplicate clusters shown in the report.
  c.dedup.report_clusters = 3

  # The train/eval contamination report (lm/data/prepare/contamination.py): eval documents that are
  # exact or near duplicates (near_threshold; 0 = not checked) of a training document or share
  # an n-gram of `ngram` words (GPT-3's 13) or, in scripts without spaces, `char_ngram`
  # characters with one.
  c.contamination = ml_collections.ConfigDict()
  c.contamination.enabled = True
  c.contamination.ngram = contamination.DEFAULT_NGRAM
  c.contamination.char_ngram = contamination.DEFAULT_CHAR_NGRAM
  c.contamination.near_threshold = dedup.DEFAULT_THRESHOLD

  # The tokenizer the shards are written with: trained on the cleaned, deduplicated training
  # text, or loaded from `path` (a tokenizer directory, e.g. another prepare or training
  # workdir's `tokenizer/`).
  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.path = ""
  # 'char', 'byte', 'word' or 'sentencepiece', with the options of config.data in training.
  c.tokenizer.kind = "sentencepiece"
  c.tokenizer.vocab_size = 8000
  c.tokenizer.model_type = "bpe"
  c.tokenizer.character_coverage = 1.0
  c.tokenizer.byte_fallback = True
  # Train on at most this many documents, spread evenly over the corpus (0 = all).
  c.tokenizer.training_documents = 50000

  # Optional EDA augmentation of the training documents (lm/data/augment.py, shared with
  # fine-tuning): `copies` extra copies of each with about rate x words swapped, deleted or
  # inserted, seeded per document. rate 0 = off.
  c.augment = ml_collections.ConfigDict()
  c.augment.rate = 0.0
  c.augment.copies = 1
  c.augment.operations = "swap,delete,insert"
  return c


def cleaner_from(clean_cfg: Any) -> cleaning.Cleaner:
  return cleaning.Cleaner(escapes=clean_cfg.escapes, markup=clean_cfg.markup, nfkc=clean_cfg.nfkc,
                          control=clean_cfg.control, whitespace=clean_cfg.whitespace,
                          lowercase=clean_cfg.lowercase,
                          stopwords=cleaning.parse_stopwords(clean_cfg.stopwords))


def validate(config: Any) -> None:
  """Raises UserError naming the first key of a prepare config that is wrong."""
  _check_keys(config.to_dict(), base_config().to_dict(), "config")
  checks = [
      ("inputs", bool(config.inputs.strip()), "must name files, globs, archives or 'tfds:NAME'"),
      ("valid_fraction", 0 < config.valid_fraction < 1 or bool(config.valid_inputs.strip()),
       "must be in (0, 1) when config.valid_inputs is ''"),
      ("reader.txt_unit", config.reader.txt_unit in text_files.TXT_UNITS,
       f"choose one of {', '.join(text_files.TXT_UNITS)}"),
      ("reader.entry_separator", bool(config.reader.entry_separator.strip()),
       "must be the non-blank line between entries, e.g. '%'"),
      ("reader.encoding_errors", config.reader.encoding_errors in text_files.ENCODING_ERRORS,
       f"choose one of {', '.join(text_files.ENCODING_ERRORS)}"),
      ("dedup.shingle_size", config.dedup.shingle_size >= 0, "must be >= 0"),
      ("dedup.seed", config.dedup.seed >= 0, "must be >= 0"),
      ("dedup.report_clusters", config.dedup.report_clusters >= 0, "must be >= 0"),
      ("contamination.ngram", config.contamination.ngram >= 1, "must be >= 1"),
      ("contamination.char_ngram", config.contamination.char_ngram >= 1, "must be >= 1"),
      ("contamination.near_threshold", 0 <= config.contamination.near_threshold <= 1,
       "must be in [0, 1] (0: no near-duplicate check)"),
      ("tokenizer.kind", config.tokenizer.kind in tokenizers.KINDS,
       f"choose one of {', '.join(tokenizers.KINDS)}"),
      ("tokenizer.model_type", config.tokenizer.model_type in MODEL_TYPES,
       f"choose one of {', '.join(MODEL_TYPES)}"),
      ("tokenizer.training_documents", config.tokenizer.training_documents >= 0, "must be >= 0"),
      ("augment.rate", 0 <= config.augment.rate < 1, "must be in [0, 1)"),
      ("augment.copies", config.augment.copies >= 0, "must be >= 0"),
      ("augment.operations", all(op.strip() in augment.OPERATIONS
                                 for op in config.augment.operations.split(",") if op.strip()),
       f"comma-separated names from {', '.join(augment.OPERATIONS)}"),
  ]
  for name in ("min_chars", "max_chars", "min_words", "max_words", "top_ngram_size",
               "duplicate_ngram_size"):
    checks.append((f"quality.{name}", config.quality[name] >= 0, "must be >= 0"))
  for name in ("max_symbol_ratio", "min_alpha_word_share", "max_duplicate_line_share",
               "max_top_ngram_share", "max_duplicate_ngram_share"):
    checks.append((f"quality.{name}", 0 <= config.quality[name] <= 1, "must be in [0, 1]"))
  for key, ok, problem in checks:
    if not ok:
      raise UserError(f"config.{key}={_get(config, key)!r}: {problem}")
  dedup.check_unit(config.dedup.shingle_unit, "config.dedup.shingle_unit")
  if config.dedup.near:  # The index checks threshold, num_perm and lsh_bands together.
    dedup.NearDuplicateIndex(config.dedup.near_threshold, config.dedup.num_perm,
                             bands=config.dedup.lsh_bands, config_key="config.dedup")


def _check_keys(value: Any, default: Any, where: str) -> None:
  """Unknown or missing keys, and values of the wrong type, as UserErrors."""
  if isinstance(default, dict):
    if not isinstance(value, dict):
      raise UserError(f"{where}={value!r}: must be a section, as in lm/data/prepare/config.py")
    for name in sorted(set(value) - set(default)):
      raise UserError(f"{where}.{name}: unknown key (see lm/data/prepare/config.py)")
    for name in sorted(set(default) - set(value)):
      raise UserError(f"{where}.{name}: missing; start from lm.data.prepare.config.base_config()")
    for name in default:
      _check_keys(value[name], default[name], f"{where}.{name}")
    return
  kind = type(default)
  ok = (isinstance(value, bool) if kind is bool else
        isinstance(value, int) and not isinstance(value, bool) if kind is int else
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if kind is float else isinstance(value, kind))
  if not ok:
    raise UserError(f"{where}={value!r}: must be {kind.__name__}")


def _get(config: Any, key: str) -> Any:
  for part in key.split("."):
    config = config[part]
  return config
