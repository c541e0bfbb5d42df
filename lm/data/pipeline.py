"""From config.data to a tokenizer and cached train/validation(/test) token streams in the
workdir."""

import dataclasses
import os
from typing import Any

from lm.data import reader, splits, token_store, tokenizers
from lm.data.prepare import layout as prepare_layout
from lm.data.token_store import TokenStream
from lm.data.tokenizers import Tokenizer
from lm.errors import UserError

TOKENIZER_DIR = "tokenizer"
CACHE_DIR = "data"


@dataclasses.dataclass(frozen=True)
class PreparedData:
  tokenizer: Tokenizer
  train: TokenStream
  valid: TokenStream
  test: TokenStream | None = None  # config.data.test_source's text, when set.


def prepare_data(data_cfg: Any, workdir: str) -> PreparedData:
  """Loads or trains the tokenizer and tokenizes both splits once, caching them in the workdir.

  The tokenizer is trained on the training split only and saved in WORKDIR/tokenizer; a resumed
  run reuses it. Token streams are cached in WORKDIR/data and rebuilt when the source files,
  the tokenizer or the reading options change. With `config.data.prepared`, the tokenizer and
  the token streams of that `python -m lm.data.prepare` workdir are used as they are.
  """
  if data_cfg.prepared:
    return _load_prepared(data_cfg.prepared, workdir)
  documents: dict[str, list[str]] = {}

  def split_documents(split: str) -> list[str]:
    if split not in documents:
      documents.update(_read_splits(data_cfg))
    return documents[split]

  tokenizer_dir = os.path.join(workdir, TOKENIZER_DIR)
  if os.path.exists(os.path.join(tokenizer_dir, "tokenizer.json")):
    tokenizer = tokenizers.load_tokenizer(tokenizer_dir)
  else:
    tokenizer = tokenizers.build_tokenizer(
        data_cfg.tokenizer, split_documents("train"),
        **tokenizers.tokenizer_options(data_cfg.tokenizer, data_cfg))
    tokenizer.save(tokenizer_dir)

  streams = {}
  for split in ("train", "valid", "test") if data_cfg.test_source else ("train", "valid"):
    fingerprint = {
        "split": split,
        "source": reader.source_fingerprint(data_cfg.source),
        "valid_source": (
            reader.source_fingerprint(data_cfg.valid_source, config_key="config.data.valid_source")
            if data_cfg.valid_source else None),
        **({
            "test_source":
                reader.source_fingerprint(data_cfg.test_source,
                                          config_key="config.data.test_source")
        } if split == "test" else {}),
        "options": {
            k: data_cfg[k] for k in ("valid_fraction", "train_split", "valid_split", "text_field",
                                    "txt_unit", "entry_separator", "encoding_errors", "lowercase")
        },
        "tokenizer": tokenizer.fingerprint(),
    }
    build = lambda split=split: token_store.tokenize_documents(split_documents(split), tokenizer)
    streams[split] = token_store.cached_stream(os.path.join(workdir, CACHE_DIR), split, fingerprint,
                                               build)
  return PreparedData(tokenizer=tokenizer, train=streams["train"], valid=streams["valid"],
                      test=streams.get("test"))


def _load_prepared(prepared_dir: str, workdir: str) -> PreparedData:
  """The tokenizer and memory-mapped token streams of a prepared corpus; the tokenizer is
  copied into WORKDIR/tokenizer, where checkpoints and lm.predict look for it."""
  tokenizer, train, valid = prepare_layout.load_prepared(prepared_dir)
  tokenizer_dir = os.path.join(workdir, TOKENIZER_DIR)
  if os.path.exists(os.path.join(tokenizer_dir, "tokenizer.json")):
    if tokenizers.load_tokenizer(tokenizer_dir).fingerprint() != tokenizer.fingerprint():
      raise UserError(f"config.data.prepared={prepared_dir!r}: its tokenizer differs from the one"
                      f" this run started with ({tokenizer_dir}); use a new --workdir")
  else:
    tokenizer.save(tokenizer_dir)
  return PreparedData(tokenizer=tokenizer, train=train, valid=valid)


def _read_splits(data_cfg: Any) -> dict[str, list[str]]:
  read = dict(text_field=data_cfg.text_field,
              txt_unit=data_cfg.txt_unit,
              entry_separator=data_cfg.entry_separator,
              encoding_errors=data_cfg.encoding_errors,
              tfds_data_dir=data_cfg.tfds_data_dir or None)
  train = reader.read_documents(data_cfg.source, split=data_cfg.train_split, **read)
  if data_cfg.valid_source:
    valid = reader.read_documents(data_cfg.valid_source,
                                  split=data_cfg.valid_split,
                                  config_key="config.data.valid_source",
                                  **read)
  elif data_cfg.source.strip().startswith(reader.TFDS_PREFIX):
    valid = reader.read_documents(data_cfg.source, split=data_cfg.valid_split, **read)
  else:
    train, valid = splits.split_train_valid(train, data_cfg.valid_fraction)
  if not train or not valid:
    raise UserError(f"config.data.source: no {'training' if not train else 'validation'} text "
                    f"was read from {data_cfg.source!r}")
  documents = {"train": train, "valid": valid}
  if data_cfg.test_source:
    documents["test"] = reader.read_documents(data_cfg.test_source,
                                              split="test",
                                              config_key="config.data.test_source",
                                              **read)
  if data_cfg.lowercase:
    documents = {name: [d.lower() for d in texts] for name, texts in documents.items()}
  return documents
