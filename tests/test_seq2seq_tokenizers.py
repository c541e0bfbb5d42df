"""The tokenizers of imported encoder–decoders: Marian's (two SentencePiece models and a shared
vocab.json) and T5's spiece.model give transformers' ids and texts, save, load and export."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers

from lm.convert.tokenizer_files import tokenizer_files
from lm.data import hf_tokenizer, tokenizers
from lm.data.marian_tokenizer import MarianTokenizer
from lm.convert.importer import import_hf
from tests.conftest import FIXTURES, REPO
from tests.test_convert import randomized
from tests.test_convert_seq2seq import restore_sinusoids

TEXTS = ["A man in a blue shirt is standing on a ladder.", "Zwei Männer stehen am Herd.",
         "Hello, World!", "unseen ✓ symbols ünd 你好", ""]


def train_spm(lines: list[str], path: str, vocab_size: int, **ids) -> None:
  spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=path,
                                 vocab_size=vocab_size, model_type="unigram",
                                 character_coverage=1.0, minloglevel=2, **ids)


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory) -> str:
  """An OPUS-MT style tokenizer: en and de SentencePiece models, one vocab.json over both."""
  directory = tmp_path_factory.mktemp("marian")
  pieces = {}
  for side, lang in (("source", "en"), ("target", "de")):
    lines = (FIXTURES / "multi30k" / f"train.{lang}").read_text(encoding="utf-8").splitlines()
    train_spm(lines, str(directory / side), 300)
    os.rename(directory / f"{side}.model", directory / f"{side}.spm")
    processor = spm.SentencePieceProcessor(model_file=str(directory / f"{side}.spm"))
    pieces.update({processor.id_to_piece(i): None for i in range(3, processor.get_piece_size())})
  vocab = {"</s>": 0, "<unk>": 1, ">>deu<<": 2}
  for piece in pieces:
    vocab.setdefault(piece, len(vocab))
  vocab["<pad>"] = len(vocab)
  (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
  (directory / "tokenizer_config.json").write_text(json.dumps(
      dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>")))
  return str(directory)


def test_marian_matches_transformers(marian_dir):
  ours = hf_tokenizer.import_tokenizer(marian_dir)
  assert isinstance(ours, MarianTokenizer)
  theirs = transformers.MarianTokenizer(source_spm=os.path.join(marian_dir, "source.spm"),
                                        target_spm=os.path.join(marian_dir, "target.spm"),
                                        vocab=os.path.join(marian_dir, "vocab.json"))
  assert (ours.special_ids.eos, ours.special_ids.pad) == (theirs.eos_token_id, theirs.pad_token_id)
  for text in TEXTS + [">>deu<< A dog runs."]:
    ids = ours.encode(text)
    assert ids == theirs.encode(text, add_special_tokens=False), text
    assert ours.decode(ids + [ours.special_ids.eos]) == theirs.decode(
        ids, skip_special_tokens=True), text


def test_marian_saves_loads_and_exports(marian_dir, tmp_path):
  tokenizer = hf_tokenizer.import_tokenizer(marian_dir, vocab_size=1000)
  tokenizer.save(tmp_path / "saved")
  loaded = tokenizers.load_tokenizer(tmp_path / "saved")
  assert loaded.fingerprint() == tokenizer.fingerprint() and loaded.vocab_size == 1000
  assert loaded.special_mask()[[0, 1, 999]].all() and not loaded.special_mask()[2]
  for text in TEXTS:
    assert loaded.encode(text) == tokenizer.encode(text)
  np.testing.assert_array_equal(loaded.token_bytes(), tokenizer.token_bytes())
  files = tokenizer_files(loaded, max_len=64, prefix_ids=[], encoder=False)
  export = tmp_path / "export"
  export.mkdir()
  for name, content in files.items():
    (export / name).write_bytes(content)
  reread = transformers.AutoTokenizer.from_pretrained(str(export))
  assert type(reread).__name__ == "MarianTokenizer"
  assert reread.encode(TEXTS[0], add_special_tokens=False) == tokenizer.encode(TEXTS[0])


def test_t5_spiece_model_is_read(tmp_path):
  """A T5 directory with only spiece.model: pad 0, EOS 1, unk 2, ids as SentencePiece's."""
  lines = (FIXTURES / "multi30k" / "train.en").read_text(encoding="utf-8").splitlines()
  train_spm(lines, str(tmp_path / "spiece"), 300, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
  tokenizer = hf_tokenizer.import_tokenizer(tmp_path)
  assert (tokenizer.special_ids.pad, tokenizer.special_ids.eos, tokenizer.special_ids.unk) == (0, 1,
                                                                                               2)
  theirs = transformers.T5Tokenizer.from_pretrained(str(tmp_path), extra_ids=0)
  for text in TEXTS[:3]:
    assert tokenizer.encode(text) == theirs.encode(text, add_special_tokens=False), text
  assert tokenizer.decode(tokenizer.encode(TEXTS[0])) == TEXTS[0]


def test_imported_marian_translates_a_file_as_transformers(marian_dir, tmp_path):
  """Model and tokenizer together: lm.generate --input on an imported (random) Marian model
  writes what transformers' tokenizer -> generate -> decode gives, beam 4."""
  with open(os.path.join(marian_dir, "vocab.json"), encoding="utf-8") as f:
    vocab = json.load(f)
  pad, eos = vocab["<pad>"], vocab["</s>"]
  config = transformers.MarianConfig(vocab_size=len(vocab), decoder_vocab_size=len(vocab),
                                     d_model=32, encoder_layers=2, decoder_layers=2,
                                     encoder_attention_heads=4, decoder_attention_heads=4,
                                     encoder_ffn_dim=48, decoder_ffn_dim=48,
                                     max_position_embeddings=64, pad_token_id=pad,
                                     eos_token_id=eos, decoder_start_token_id=pad,
                                     forced_eos_token_id=None)
  model = randomized(transformers.MarianMTModel(config))
  restore_sinusoids(model)
  hf = tmp_path / "hf"
  model.save_pretrained(hf)
  for name in ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(marian_dir, name), hf / name)
  import_hf(str(hf), str(tmp_path / "run"))
  sources = TEXTS[:3]
  (tmp_path / "in.txt").write_text("".join(s + "\n" for s in sources), encoding="utf-8")
  result = subprocess.run([sys.executable, "-m", "lm.generate", f"--workdir={tmp_path / 'run'}",
                           f"--input={tmp_path / 'in.txt'}", f"--output={tmp_path / 'out.txt'}",
                           "--beam_size=4", "--length_penalty=0", "--max_new_tokens=10"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  tokenizer = transformers.MarianTokenizer.from_pretrained(str(hf))
  inputs = tokenizer(sources, return_tensors="pt", padding=True)
  with torch.no_grad():
    out = model.generate(**inputs, num_beams=4, max_new_tokens=10, length_penalty=0.0,
                         early_stopping=True, do_sample=False)
  expected = tokenizer.batch_decode(out, skip_special_tokens=True)
  assert any(expected)  # Not only empty outputs.
  assert (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:-1] == expected
