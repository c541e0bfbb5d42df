"""Text cleaning steps, each switchable and counted: `Cleaner(...).clean(text) -> (text, counts)`.

The steps run in this order (a step that is off is skipped):

  escapes     terminal escape sequences (ANSI colors such as ESC[32m, OSC titles) removed
  markup      HTML/XML tags removed (line-breaking tags such as <br /> become a newline) and
              character references (&amp;, &#233;) decoded
  nfkc        Unicode NFKC normalization (full-width forms to ASCII, ligatures split, ...)
  control     control characters (category Cc but tab, LF and CR; lone surrogates) removed
  stopwords   words of a stop-word list removed, case-insensitively (classic baselines only;
              Chinese ones as whole jieba words)
  lowercase   str.lower()
  whitespace  CR/CRLF to LF, runs of spaces/tabs to one space, spaces at line ends dropped,
              more than one blank line to one, the text stripped

Counts are numbers of *items* per step: sequences, tags and references, changed characters,
removed characters, removed words, changed documents (lowercase, whitespace). The cleaner is
idempotent: it repeats the steps until the text stops changing (a step can expose work for an
earlier one, e.g. NFKC turns full-width `＜b＞` into a tag), so clean(clean(x)) == clean(x).
Nothing here assumes whitespace-separated words except the stop-word step.
"""

import collections
import dataclasses
import html
import re
import unicodedata
from typing import Iterable

from lm.data import segmenter

STEPS = ("escapes", "markup", "nfkc", "control", "stopwords", "lowercase", "whitespace")
# Passes over the steps before giving up on a fixed point (in practice 2 suffice: the second
# confirms that nothing changes).
_MAX_PASSES = 4

# ECMA-48: CSI (ESC [ or the 8-bit 0x9b) parameters, intermediates, a final byte; OSC (ESC ])
# up to BEL or ST; other two-character escapes (ESC followed by 0x40-0x5f, or charset
# designations such as ESC ( B).
_ESCAPE_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()*+][0-9A-Za-z]"
    r"|\x1b[@-Z\\-_]")
# A tag starts with a letter, '/' or '!' right after '<', so "a < b > c" is text, not markup.
_TAG_RE = re.compile(r"<[A-Za-z/!][^<>]*>")
_LINE_BREAK_TAG_RE = re.compile(r"<\s*/?\s*(?:br|p|div|li|tr|h[1-6])\b[^<>]*>", re.IGNORECASE)
_REFERENCE_RE = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
# What the whitespace step would change inside an ASCII text: whitespace but space and LF, a
# space next to a space or LF, more than one blank line.
# (The other ASCII whitespace characters are not printable: str.isprintable finds them.)
_UNCLEAN_ASCII_SPACE = ("  ", " \n", "\n ", "\n\n\n")
# CR is left to the whitespace step, which turns it into a newline.
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# A short English stop-word list (function words), for classic bag-of-words baselines.
ENGLISH_STOPWORDS = tuple("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())


# A short Chinese stop-word list (particles, pronouns, conjunctions, prepositions; the
# negations 不, 没, 没有 are left in, as sentiment needs them). Chinese is written without
# spaces, so these are removed as whole jieba words (lm/data/segmenter.py): 的 goes from
# 我的书, 目的 stays.
CHINESE_STOPWORDS = tuple("""
的 地 得 了 着 过 是 在 和 与 及 或 而 并 也 都 就 还 又 把 被 让 给 对 从 向 往 以 于 为
因为 所以 但是 但 可是 如果 虽然 这 那 这个 那个 这些 那些 这样 那样 之 其 此 我 你 他 她 它
我们 你们 他们 她们 它们 自己 什么 怎么 哪 哪里 谁 吗 呢 吧 啊 呀 哦 嗯 很 太 更 最 一个
一些 个 等 等等
""".split())


@dataclasses.dataclass(frozen=True)
class Cleaner:
  """The cleaning steps of the module doc; each flag switches its step."""

  escapes: bool = True
  markup: bool = True
  nfkc: bool = True
  control: bool = True
  stopwords: tuple[str, ...] = ()
  lowercase: bool = False
  whitespace: bool = True

  def __post_init__(self):
    words = tuple(w.strip() for w in self.stopwords if w.strip())
    object.__setattr__(self, "stopwords", words)
    # Words with a CJK character are removed as jieba words; the others by pattern.
    cjk = frozenset(w for w in words if any(segmenter.is_cjk(c) for c in w))
    object.__setattr__(self, "_cjk_stopwords", cjk)
    words = tuple(w for w in words if w not in cjk)
    pattern = None
    if words:
      # Longest first, so "the" never shadows "them"; \b keeps "a" from matching inside words.
      alternatives = "|".join(map(re.escape, sorted(set(words), key=len, reverse=True)))
      pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    object.__setattr__(self, "_stopword_re", pattern)
    object.__setattr__(self, "_steps", tuple((step, getattr(self, f"_{step}"))
                                             for step in self.enabled_steps))

  @property
  def enabled_steps(self) -> tuple[str, ...]:
    return tuple(step for step in STEPS if getattr(self, step))

  def clean(self, text: str) -> tuple[str, collections.Counter]:
    """The cleaned text and the number of items each step removed or changed."""
    counts = collections.Counter()
    for _ in range(_MAX_PASSES):
      before = text
      for step, function in self._steps:
        text, count = function(text)
        if count:
          counts[step] += count
      if text == before:
        break
    return text, counts

  # --- Steps: each returns (new text, items removed or changed) --------------------------------

  def _escapes(self, text: str) -> tuple[str, int]:
    if "\x1b" not in text and "\x9b" not in text:
      return text, 0
    return _ESCAPE_RE.subn("", text)

  def _markup(self, text: str) -> tuple[str, int]:
    if "<" not in text and "&" not in text:
      return text, 0
    total = 0
    while True:  # Decoded references may form new tags ("&lt;b&gt;"); every round shortens.
      text, breaks = _LINE_BREAK_TAG_RE.subn("\n", text)
      text, tags = _TAG_RE.subn("", text)
      decoded = [0]

      def decode(match: re.Match) -> str:
        value = html.unescape(match.group())
        decoded[0] += value != match.group()  # Unknown names such as "&foo;" stay as they are.
        return value

      text = _REFERENCE_RE.sub(decode, text)
      if not breaks + tags + decoded[0]:
        return text, total
      total += breaks + tags + decoded[0]

  def _nfkc(self, text: str) -> tuple[str, int]:
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
      return text, 0
    normalized = unicodedata.normalize("NFKC", text)
    return normalized, max(1, _changed_chars(text, normalized))

  def _control(self, text: str) -> tuple[str, int]:
    if text.isascii() and text.replace("\n", "").replace("\t", "").replace("\r", "").isprintable():
      return text, 0  # A fast check: no ASCII control character but tab, LF and CR.
    return _CONTROL_RE.subn("", text)

  def _stopwords(self, text: str) -> tuple[str, int]:
    removed = 0
    if self._stopword_re is not None:
      text, removed = self._stopword_re.subn("", text)
    if self._cjk_stopwords and any(map(segmenter.is_cjk, text)):
      pieces = segmenter.pieces(text)
      kept = [p for p in pieces if p not in self._cjk_stopwords]
      text, removed = "".join(kept), removed + len(pieces) - len(kept)
    return text, removed

  def _lowercase(self, text: str) -> tuple[str, int]:
    lowered = text.lower()
    return lowered, int(lowered != text)

  def _whitespace(self, text: str) -> tuple[str, int]:
    if (text.isascii() and text.replace("\n", "").isprintable() and
        not any(piece in text for piece in _UNCLEAN_ASCII_SPACE) and
        not (text[:1].isspace() or text[-1:].isspace())):
      return text, 0  # Already clean (a fast check for ASCII text).
    lines, blank = [], False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
      line = " ".join(line.split())  # str.split() knows every Unicode space.
      if not line:
        blank = True
        continue
      if blank and lines:
        lines.append("")  # At most one blank line between paragraphs.
      lines.append(line)
      blank = False
    cleaned = "\n".join(lines)
    return cleaned, int(cleaned != text)


def clean(text: str, **steps) -> tuple[str, collections.Counter]:
  """`Cleaner(**steps).clean(text)`: the default steps (no lowercasing, no stop words)."""
  return Cleaner(**steps).clean(text)


def parse_stopwords(spec: str) -> tuple[str, ...]:
  """'' (none), 'english' (ENGLISH_STOPWORDS), 'chinese' (CHINESE_STOPWORDS) or
  comma-separated words."""
  spec = spec.strip()
  if not spec:
    return ()
  if spec in ("english", "chinese"):
    return ENGLISH_STOPWORDS if spec == "english" else CHINESE_STOPWORDS
  return tuple(w.strip() for w in spec.split(",") if w.strip())


def count_escapes(texts: Iterable[str]) -> int:
  """How many terminal escape sequences (and stray ESC characters) `texts` hold: a check
  that none survive cleaning."""
  total = 0
  for text in texts:
    if "\x1b" not in text and "\x9b" not in text:
      continue
    rest, sequences = _ESCAPE_RE.subn("", text)
    total += sequences + rest.count("\x1b") + rest.count("\x9b")
  return total


def _changed_chars(before: str, after: str) -> int:
  """A cheap count of the characters a normalization changed: differing positions of the
  common prefix-aligned part plus the length difference."""
  common = min(len(before), len(after))
  differing = sum(a != b for a, b in zip(before[:common], after[:common]))
  return differing + abs(len(before) - len(after))
