"""A word-level tokenizer: whitespace-separated words, and one <eos> token per line end.

This is the unit of the classic word-level language-model benchmarks (Penn Treebank,
WikiText-2/103; Mikolov et al. 2010, Merity et al. 2016): their text is already tokenized into
words separated by spaces, every line end counts as an `<eos>` word, and perplexity is
exp(total NLL / number of words, `<eos>` included). With this tokenizer `eval/perplexity` is
that number. The vocabulary is the `vocab_size` most frequent training words (ties broken
alphabetically, the special ids and `<eos>` included in the count); other words become <unk>.

Text is normalized on the way: runs of spaces and tabs become one space and the spaces at the
ends of a line go, so `decode(encode(text))` equals `normalize(text)`. With a segmenter
(config.data.word_segmenter='jieba', lm/data/segmenter.py) a line's words are jieba's Chinese
words and decoding joins them without spaces next to CJK characters.
"""

import collections
import json
import os
from typing import Any, Iterable

import numpy as np

from lm.data import segmenter as segmenter_lib
from lm.data import tokenizer_base
from lm.data.tokenizer_base import NUM_SPECIAL, UNK_ID, Tokenizer
from lm.errors import UserError

WORDS_FILE = "words.json"
EOS_WORD = "<eos>"  # The line end's word (not the special EOS id: it is text, and predicted).
EOS_WORD_ID = NUM_SPECIAL


def normalize(text: str, segmenter: str = "") -> str:
  """The text a word tokenizer round-trips: single spaces between words (none next to a CJK
  character when segmented), none at line ends."""
  return "\n".join(segmenter_lib.join(segmenter_lib.words(line, segmenter))
                   for line in text.split("\n"))


class WordTokenizer(Tokenizer):
  """Ids: the special tokens, then `<eos>` (a line end), then the words."""

  name = "word"

  def __init__(self, words: list[str], segmenter: str = ""):
    if len(set(words)) != len(words) or any(not w or w != "".join(w.split()) for w in words):
      raise ValueError("WordTokenizer needs distinct words without whitespace")
    self._words = list(words)
    self._ids = {w: i for i, w in enumerate(self._words, NUM_SPECIAL + 1)}
    self.segmenter = segmenter_lib.check(segmenter)

  @classmethod
  def train(cls, texts: Iterable[str], vocab_size: int, segmenter: str = "") -> "WordTokenizer":
    """The most frequent words of `texts` (split by `segmenter`), as many as fit in
    `vocab_size` ids."""
    counts = collections.Counter()
    for text in texts:
      counts.update(segmenter_lib.words(text, segmenter))
    if not counts:
      raise UserError("no training text for the word tokenizer (config.data.source)")
    room = vocab_size - NUM_SPECIAL - 1
    if room < 1:
      raise UserError(f"config.data.vocab_size={vocab_size}: the word tokenizer needs more than "
                      f"{NUM_SPECIAL + 1} ids (the special tokens and <eos>)")
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return cls([word for word, _ in ranked[:room]], segmenter)

  @property
  def vocab_size(self) -> int:
    return NUM_SPECIAL + 1 + len(self._words)

  @property
  def words(self) -> list[str]:
    return list(self._words)

  def encode(self, text: str) -> list[int]:
    ids = []
    lines = text.split("\n")
    for number, line in enumerate(lines):
      ids.extend(self._ids.get(word, UNK_ID)
                 for word in segmenter_lib.words(line, self.segmenter))
      if number < len(lines) - 1:
        ids.append(EOS_WORD_ID)
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    lines, words = [], []
    for i in map(int, ids):
      if i == EOS_WORD_ID:
        lines.append(segmenter_lib.join(words))
        words = []
      elif NUM_SPECIAL + 1 <= i < self.vocab_size:
        words.append(self._words[i - NUM_SPECIAL - 1])
    return "\n".join(lines + [segmenter_lib.join(words)])

  def token_bytes(self) -> np.ndarray:
    """A word stands for its UTF-8 bytes and the space after it (none after a segmented word
    that ends in a CJK character); `<eos>` for the newline."""
    space = lambda w: 0 if self.segmenter and segmenter_lib.is_cjk(w[-1]) else 1
    counts = [len(w.encode("utf-8", errors="surrogatepass")) + space(w) for w in self._words]
    return np.array([0] * NUM_SPECIAL + [1] + counts, dtype=np.int32)

  def _payload(self) -> dict[str, bytes]:
    return {WORDS_FILE: json.dumps(self._words, ensure_ascii=False).encode("utf-8")}

  @classmethod
  def load(cls, directory: str) -> "WordTokenizer":
    path = os.path.join(directory, WORDS_FILE)
    segmenter = tokenizer_base.read_metadata(directory).get("segmenter", "")
    try:
      return cls(json.loads(tokenizer_base.read_payload(directory, WORDS_FILE)), segmenter)
    except (ValueError, TypeError, RecursionError) as e:  # ValueError: JSON, Unicode, words.
      raise UserError(f"{path}: corrupt word vocabulary ({e!r})") from None

  def _metadata(self) -> dict[str, Any]:
    return {"eos_word_id": EOS_WORD_ID, "segmenter": self.segmenter}
