"""Prepare the Chinese fortunes, Tang 300 poems and Song 100 ci (Debian `fortunes-zh`) as shipped:
entries between lines holding `%`, with the terminal color codes (ESC[32m ...) around titles and
authors removed and counted, NFKC (full-width forms such as ，！： to ASCII; the argument
`fullwidth` keeps them as written), markup removal off (the Debian reference snippets hold
placeholders such as <package_name>), character shingles for near-duplicates, a SentencePiece
vocabulary with byte fallback (character_coverage 0.9995), and 5% of the entries held out. The
files are zh-fortunes in the data root (lm/data/data_root.py); `python -m lm.data.download
zh-fortunes` gets them.
Every entry must round-trip through the tokenizer, with no `unk`.

  python -m lm.data.prepare --config=experiments/data/zh_fortunes.py --workdir=runs/zh_data

Arguments: `char` (the char tokenizer with byte fallback instead of SentencePiece), `smoke`
(tang300 only, a small vocabulary: seconds). Expected (2-core CPU, BENCHMARKS.md "Issue 5"):
~15 s; report.md lists ~34,000 escape sequences removed and 0 in the written text.
"""

from lm.data import data_root
from lm.data.prepare import config as prepare_config
from lm.experiment_args import parse_args



def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("char", "fullwidth", "smoke"))
  config = prepare_config.base_config()
  config.inputs = ",".join(data_root.path("zh-fortunes", name)
                           for name in ("chinese", "tang300", "song100"))
  config.valid_fraction = 0.05
  config.reader.txt_unit = "entry"
  config.reader.entry_separator = "%"
  config.dedup.shingle_unit = "char"
  # The Debian reference snippets hold placeholders such as <package_name>: text, not markup.
  config.clean.markup = False
  config.clean.nfkc = "fullwidth" not in args
  config.tokenizer.update(kind="sentencepiece", vocab_size=8000, model_type="bpe",
                          character_coverage=0.9995, byte_fallback=True, training_documents=0)
  if "char" in args:
    config.tokenizer.kind = "char"
  if "smoke" in args:
    config.inputs = data_root.path("zh-fortunes", "tang300")
    config.tokenizer.vocab_size = 3500
  return config
