"""A tokenizer of this project -> the Hugging Face tokenizer files of an exported model.

The project's own tokenizers become a `tokenizer.json` of the `tokenizers` library that
`AutoTokenizer.from_pretrained` loads and that encodes text to the same ids:
  char           BPE without merges: one id per known character, then UNK or the UTF-8 byte
                 ids (`<0xXX>` pieces, byte_fallback)
  byte           the same with no characters: every character spelled as its byte ids
  word           WordLevel over whitespace-split words; a line end is the `<eos>` word
  sentencepiece  BPE (merges in SentencePiece's score order) or Unigram with its scores; spaces
                 as "▁", "\\n" a piece of its own, byte fallback
Imported tokenizers write back what was imported (tokenizer.json, or tokenizer.model).
`prefix_ids` (e.g. BOS for a model trained with `sft`) and, for encoder classifiers,
[CLS] ... [SEP] become the post-processor, so `tokenizer(text)` builds the inputs that the
task trained on.

Known differences: a literal special-token string in the text (e.g. "<s>") becomes that special
id, and SentencePiece's literal "▁" (U+2581) is encoded as a space.
"""

import dataclasses
import json
from typing import Any

import tokenizers
from sentencepiece import sentencepiece_model_pb2
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from lm.data import hf_tokenizer, sentencepiece_tokenizer, tokenizer_base, word_tokenizer
from lm.data.tokenizer_base import NUM_SPECIAL, SPECIAL_TOKENS, Tokenizer
from lm.data.tokenizers import ByteTokenizer, CharTokenizer

_UNK = SPECIAL_TOKENS[tokenizer_base.UNK_ID]
_BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]


def tokenizer_files(tokenizer: Tokenizer, *, max_len: int, prefix_ids: list[int],
                    encoder: bool) -> dict[str, bytes]:
  """{file name: content}: tokenizer.json (or tokenizer.model), tokenizer_config.json (with an
  imported model's Jinja chat template) and special_tokens_map.json."""
  payload = tokenizer._payload()  # pylint: disable=protected-access
  if hf_tokenizer.HF_FILE in payload:
    files = {"tokenizer.json": payload[hf_tokenizer.HF_FILE]}
    class_name = "PreTrainedTokenizerFast"
  elif tokenizer.name == "hf_sentencepiece":
    files = {"tokenizer.model": payload[sentencepiece_tokenizer.MODEL_FILE]}
    class_name = "LlamaTokenizer"
  elif tokenizer.name == "hf_marian":
    files = tokenizer.hf_files()
    class_name = "MarianTokenizer"
  else:
    backend = _own_tokenizer(tokenizer)
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    post = _post_processor(tokenizer, prefix_ids, encoder)
    if post is not None:
      backend.post_processor = post
    files = {"tokenizer.json": backend.to_str(pretty=True).encode("utf-8")}
    class_name = "PreTrainedTokenizerFast"
  special = {
      f"{role}_token": _piece(tokenizer, token_id)
      for role, token_id in dataclasses.asdict(tokenizer.special_ids).items()
      if token_id is not None
  }
  config = {"tokenizer_class": class_name, "add_bos_token": False, "add_eos_token": False,
            "model_max_length": max_len, "clean_up_tokenization_spaces": False, **special}
  template = tokenizer.chat_template
  if template is not None and template.kind == "jinja":  # An imported model's, as it came.
    config["chat_template"] = template.template
  files["tokenizer_config.json"] = json.dumps(config, indent=2, ensure_ascii=False).encode()
  files["special_tokens_map.json"] = json.dumps(special, indent=2, ensure_ascii=False).encode()
  return files


def _piece(tokenizer: Tokenizer, token_id: int) -> str:
  if hasattr(tokenizer, "id_to_piece"):
    return tokenizer.id_to_piece(token_id)
  return SPECIAL_TOKENS[token_id]


def _own_tokenizer(tokenizer: Tokenizer) -> tokenizers.Tokenizer:
  if isinstance(tokenizer, CharTokenizer):
    return _chars(tokenizer.chars, tokenizer.byte_fallback)
  if isinstance(tokenizer, ByteTokenizer):
    return _chars([], byte_fallback=True)
  if isinstance(tokenizer, word_tokenizer.WordTokenizer):
    return _words(tokenizer.words)
  if isinstance(tokenizer, sentencepiece_tokenizer.SentencePieceTokenizer):
    return _sentencepiece(tokenizer.model_proto)
  raise ValueError(f"no Hugging Face tokenizer for a {tokenizer.name} tokenizer")


def _chars(chars: list[str], byte_fallback: bool) -> tokenizers.Tokenizer:
  vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
  vocab.update({c: i for i, c in enumerate(chars, NUM_SPECIAL)})
  if byte_fallback:
    vocab.update({piece: i for i, piece in enumerate(_BYTE_PIECES, NUM_SPECIAL + len(chars))})
  backend = tokenizers.Tokenizer(
      models.BPE(vocab, [], unk_token=_UNK, byte_fallback=byte_fallback, fuse_unk=False))
  backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
  return backend


def _words(words: list[str]) -> tokenizers.Tokenizer:
  # The line end's id is named "\n" here, so that an added token matches it in the text.
  vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
  vocab["\n"] = word_tokenizer.EOS_WORD_ID
  vocab.update({w: i for i, w in enumerate(words, word_tokenizer.EOS_WORD_ID + 1)})
  backend = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token=_UNK))
  backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  backend.add_tokens([tokenizers.AddedToken("\n", normalized=False)])
  return backend


def _sentencepiece(model_proto: bytes) -> tokenizers.Tokenizer:
  proto = sentencepiece_model_pb2.ModelProto.FromString(model_proto)
  kinds = sentencepiece_model_pb2.ModelProto.SentencePiece
  spec = proto.trainer_spec
  pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
  if spec.model_type == sentencepiece_model_pb2.TrainerSpec.BPE:
    vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
    model = models.BPE(vocab, _merges(pieces), unk_token=_UNK, byte_fallback=spec.byte_fallback,
                       fuse_unk=True)
  else:
    model = models.Unigram([(piece, score) for piece, score, _ in pieces],
                           unk_id=tokenizer_base.UNK_ID, byte_fallback=spec.byte_fallback)
  backend = tokenizers.Tokenizer(model)
  backend.normalizer = normalizers.Replace(" ", sentencepiece_tokenizer.SPACE_MARKER)
  backend.decoder = decoders.Sequence([
      decoders.Replace(sentencepiece_tokenizer.SPACE_MARKER, " "),
      decoders.ByteFallback(),
      decoders.Fuse(),
  ])
  user_defined = [piece for piece, _, kind in pieces if kind == kinds.USER_DEFINED]
  backend.add_tokens([tokenizers.AddedToken(p, normalized=False) for p in user_defined])
  return backend


def _merges(pieces: list[tuple[str, float, Any]]) -> list[tuple[str, str]]:
  """BPE merges that replay SentencePiece's: every split of a normal piece into two pieces,
  ordered by the merged piece's score (highest first), then by the parts' ids."""
  normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
  ids = {piece: i for i, (piece, _, kind) in enumerate(pieces) if kind == normal}
  merges = []
  for piece, score, kind in pieces:
    if kind != normal:
      continue
    splits = [(piece[:k], piece[k:]) for k in range(1, len(piece))
              if piece[:k] in ids and piece[k:] in ids]
    merges += [(-score, ids[left], ids[right], left, right) for left, right in splits]
  return [(left, right) for *_, left, right in sorted(merges)]


def _post_processor(tokenizer: Tokenizer, prefix_ids: list[int],
                    encoder: bool) -> processors.PostProcessor | None:
  """[CLS] $A [SEP] for an encoder classifier; `prefix_ids` $A for a decoder; None if neither
  adds ids."""
  ids = tokenizer.special_ids
  if encoder:
    before, after = [ids.cls], [ids.sep]
  elif prefix_ids:
    before, after = list(prefix_ids), []
  else:
    return None
  name = lambda i: SPECIAL_TOKENS[i]
  single = [name(i) for i in before] + ["$A"] + [name(i) for i in after]
  pair = single + ["$B:1"] + [f"{name(i)}:1" for i in after]
  used = sorted(set(before + after))
  return processors.TemplateProcessing(single=single, pair=pair,
                                       special_tokens=[(name(i), i) for i in used])
