"""Words of a text: whitespace-separated, or Chinese word segmentation with jieba.

`config.data.word_segmenter`: '' splits at whitespace (languages written with spaces); 'jieba'
segments with jieba's default dictionary and HMM for unknown words (Sun Junyi's jieba, the
segmenter Chinese NLP users reach for), so '我们今天在公园里散步' is 我们 / 今天 / 在 / 公园 /
里 / 散步 instead of one word. Whitespace never makes a word of its own. `join` puts words back
together: a space between two words unless one side is a CJK character.
"""

import functools
import logging
import re
from typing import Callable, Sequence

from lm.data import cjk
from lm.errors import UserError

SEGMENTERS = ("", "jieba")
_CJK_RE = re.compile(f"[{cjk.IDEOGRAPHS}{cjk.PUNCTUATION}]")


def check(segmenter: str, config_key: str = "config.data.word_segmenter") -> str:
  if segmenter not in SEGMENTERS:
    raise UserError(f"{config_key}={segmenter!r}: choose '' (whitespace) or 'jieba'")
  return segmenter


def words(text: str, segmenter: str = "") -> list[str]:
  """The words of `text` (see the module doc)."""
  if not check(segmenter):
    return text.split()
  return [w.strip() for w in _jieba()(text) if w.strip()]


def pieces(text: str) -> list[str]:
  """jieba's segmentation of `text`, whitespace included: "".join(pieces(text)) == text."""
  return _jieba()(text)


def splitter(segmenter: str) -> Callable[[str], list[str]]:
  """`words` with `segmenter` fixed (picklable: a TF-IDF analyzer saved with joblib)."""
  return functools.partial(words, segmenter=check(segmenter))


def is_cjk(char: str) -> bool:
  """A CJK character or CJK punctuation: no space is written next to it."""
  return bool(_CJK_RE.match(char))


def join(words_: Sequence[str]) -> str:
  """The words with single spaces between them, none next to a CJK character or CJK
  punctuation."""
  out = []
  for word in words_:
    if out and not (is_cjk(out[-1][-1]) or is_cjk(word[0])):
      out.append(" ")
    out.append(word)
  return "".join(out)


@functools.lru_cache(maxsize=1)
def _jieba() -> Callable[[str], list[str]]:
  """jieba.lcut, its dictionary loaded once per process and its start-up messages quiet."""
  import jieba  # pylint: disable=g-import-not-at-top  # Only Chinese segmentation needs it.
  jieba.setLogLevel(logging.WARNING)
  jieba.initialize()
  return jieba.lcut
