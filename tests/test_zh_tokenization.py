"""Chinese end to end at the tokenizer level (issue 9), on the real zh-fortunes corpus: exact round
trips of every entry, no <unk> on held-out entries, bits-per-byte over UTF-8 bytes, and the
char vocabulary with byte fallback saved in tokenizer.json format 2."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from lm.data import text_files, token_store, tokenizer_base, tokenizers
from lm.data.prepare import cleaning
from lm.errors import UserError
from lm.training import steps
from tests.conftest import FIXTURES

ZH = FIXTURES / "zh-fortunes"


@pytest.fixture(scope="module")
def entries():
  """The cleaned entries of the three collections."""
  cleaner = cleaning.Cleaner(markup=False, nfkc=False)
  found = []
  for name in ("chinese", "tang300", "song100"):
    text = (ZH / name).read_text(encoding="utf-8")
    found += [cleaner.clean(entry)[0] for entry in text_files.split_text(text, "entry")]
  return [entry for entry in found if entry]


@pytest.fixture(scope="module")
def split(entries):
  """(train, held-out) entries: 20 held out, seeded."""
  order = np.random.default_rng(0).permutation(len(entries))
  held_out = set(order[:20].tolist())
  train = [e for i, e in enumerate(entries) if i not in held_out]
  return train, [entries[i] for i in sorted(held_out)]


@pytest.fixture(scope="module")
def spm(split):
  return tokenizers.build_tokenizer("sentencepiece", split[0], vocab_size=8000,
                                    character_coverage=0.9995, byte_fallback=True)


def test_cleaned_corpus_has_no_escapes_left(entries):
  raw = sum((ZH / name).read_text(encoding="utf-8").count("\x1b")
            for name in ("chinese", "tang300", "song100"))
  assert raw > 500  # Dirty as shipped.
  assert cleaning.count_escapes(entries) == 0
  # chinese, tang300, song100 as sliced in tests/fixtures (the full files: 5,263 / 313 / 96).
  assert len(entries) == 60 + 31 + 10


def test_sentencepiece_round_trips_every_entry_without_unk(entries, split, spm):
  _, held_out = split
  unseen = set("".join(held_out)) - set("".join(split[0]))
  assert unseen  # Held-out entries hold characters the tokenizer never saw.
  assert all(spm.decode(spm.encode(entry)) == entry for entry in entries)
  assert tokenizer_base.unk_rate(spm, held_out) == 0.0
  ids = [i for entry in held_out for i in spm.encode(entry)]
  assert any(spm.id_to_piece(i).startswith("<0x") for i in ids)  # Rare characters as bytes.
  # BPE merges Chinese characters: fewer tokens than characters (0.73 on the fixture's slice).
  assert len(ids) < 0.8 * sum(map(len, held_out))


def test_without_byte_fallback_held_out_characters_are_unk(split):
  train, held_out = split
  char = tokenizers.build_tokenizer("char", train, byte_fallback=False)
  assert tokenizer_base.unk_rate(char, held_out) > 0


def test_char_byte_fallback_round_trips_held_out_entries(split):
  train, held_out = split
  char = tokenizers.build_tokenizer("char", train, byte_fallback=True)
  assert tokenizer_base.unk_rate(char, held_out) == 0.0
  assert all(char.decode(char.encode(entry)) == entry for entry in held_out)


@pytest.mark.parametrize("kind", ["char", "byte", "sentencepiece"])
def test_bits_per_byte_divides_by_utf8_bytes(kind, split, spm):
  # A uniform model: every token costs ln V nats, so bpb = log2(V) * tokens / UTF-8 bytes,
  # for Chinese 3 bytes per character.
  train, _ = split
  text = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
  # Every character of `text` in the vocabulary (the fixture's slice lacks some).
  tokenizer = (spm if kind == "sentencepiece" else
               tokenizers.build_tokenizer(kind, train + [text]))
  assert len(text.encode("utf-8")) == 3 * len(text)
  stream = token_store.tokenize_documents([text], tokenizer)
  assert stream.num_bytes == 3 * len(text)
  targets = np.asarray(stream.tokens[:-1], dtype=np.int32)[None]  # Without the final EOS.
  vocab_size = tokenizer.vocab_size
  uniform = lambda variables, inputs, *args, **kwargs: jnp.zeros((*inputs.shape, vocab_size))
  batch = {"inputs": jnp.asarray(targets), "targets": jnp.asarray(targets),
           "weights": jnp.ones(targets.shape, jnp.float32)}
  sums = steps.eval_step({}, batch, jnp.asarray(tokenizer.token_bytes()), apply_fn=uniform)
  bpb = steps.summarize_eval({k: float(v) for k, v in sums.items()})["eval/bpb"]
  assert float(sums["bytes"]) == 3 * len(text)
  assert bpb == pytest.approx(math.log2(vocab_size) * targets.size / (3 * len(text)), rel=1e-5)


def test_char_tokenizer_formats_old_and_new(tmp_path, split):
  train, held_out = split
  plain = tokenizers.build_tokenizer("char", train)
  fallback = tokenizers.build_tokenizer("char", train, byte_fallback=True)
  plain.save(tmp_path / "v1")
  fallback.save(tmp_path / "v2")
  v1 = json.loads((tmp_path / "v1" / "tokenizer.json").read_text())
  v2 = json.loads((tmp_path / "v2" / "tokenizer.json").read_text())
  # Without byte fallback: the format-1 layout, so older code still loads it.
  assert v1["format_version"] == 1 and isinstance(json.loads((tmp_path / "v1" / "chars.json")
                                                             .read_text()), list)
  assert v2["format_version"] == 2 and v2["byte_fallback"] is True
  assert v2["vocab_size"] == v1["vocab_size"] + 256
  loaded = tokenizers.load_tokenizer(tmp_path / "v2")
  assert loaded.byte_fallback and loaded.fingerprint() == fallback.fingerprint()
  assert loaded.fingerprint() != plain.fingerprint()
  assert all(loaded.decode(loaded.encode(entry)) == entry for entry in held_out[:50])
  assert not tokenizers.load_tokenizer(tmp_path / "v1").byte_fallback
  v2["format_version"] = 3
  (tmp_path / "v2" / "tokenizer.json").write_text(json.dumps(v2))
  with pytest.raises(UserError, match="format_version 3 is not supported"):
    tokenizers.load_tokenizer(tmp_path / "v2")
