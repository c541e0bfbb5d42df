"""Exact and near-duplicate documents: normalized-text hashes, MinHash signatures and LSH.

Exact duplicates share `exact_key`: a hash of the text after NFKC, case folding and collapsing
whitespace. Near-duplicates share most of their shingles (word or character n-grams): the
Jaccard similarity of two shingle sets is estimated from MinHash signatures (Broder 1997), and
candidate pairs come from LSH banding (Leskovec et al., *Mining of Massive Datasets*, ch. 3), so
the work per document does not grow with the corpus. Streaming: per document the index keeps a
signature (`num_perm` uint32) and its band keys (ints), never the text.

Shingles are n-grams of words for scripts written with spaces and of characters for those
without (Chinese, Japanese, Thai, ...); `unit='auto'` does both within one text (`UnitText`).

Arguments and the config keys they come from (`config_key` is the prefix, e.g. `config.dedup`):
`threshold` -> `.near_threshold`, `num_perm` -> `.num_perm`, `unit` -> `.shingle_unit`,
`n` -> `.shingle_size`, `bands` -> `.lsh_bands`, `seed` -> `.seed`.
"""

import dataclasses
import functools
import hashlib
import sys
import unicodedata
from typing import Any

import numpy as np

from lm.data.prepare import hashing
from lm.errors import UserError

UNITS = ("auto", "word", "char")
# Shingle sizes when `n=0`: 5 words (as in Lee et al. 2022, "Deduplicating Training Data Makes
# Language Models Better") or 5 characters (about 3 Chinese words).
DEFAULT_NGRAM = {"auto": 5, "word": 5, "char": 5}
# A copy of a document with 5% of its words edited keeps about 0.95^5 of its 5-gram shingles:
# Jaccard ~0.95^5 / (2 - 0.95^5) = 0.63, with a long tail down to ~0.45 for short texts (Chinese
# fortunes, median 92 characters). 0.4 finds >= 95% of such copies (0.5 only 80% of the Chinese
# ones), and distinct real documents stay below ~0.25 (benchmarks/dedup_quality.py). Lee et al.'s
# 0.8 would find only copies with about 1% of the words edited.
DEFAULT_THRESHOLD = 0.4
DEFAULT_NUM_PERM = 128
MIN_NUM_PERM = 16  # Fewer permutations estimate a Jaccard similarity to no better than +-0.12.
# `auto` shingles characters when at least this share of a document's letters and digits belong
# to scripts written without spaces (one Chinese character carries about a word's worth).
CHAR_SCRIPT_SHARE = 0.25
CONFIG_KEYS = {
    "threshold": "near_threshold",
    "num_perm": "num_perm",
    "unit": "shingle_unit",
    "n": "shingle_size",
    "bands": "lsh_bands",
    "seed": "seed",
}

_SEPARATOR, _WORD_CHAR, _NO_SPACE_CHAR = 0, 1, 2
_SPACE = 32
# Letters, marks and digits of scripts written without spaces between words: Thai, Lao,
# Tibetan, Myanmar, Khmer, CJK radicals, kana, Bopomofo, CJK ideographs (BMP and planes 2-3).
_NO_SPACE_RANGES = ((0x0E00, 0x0FFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x2E80, 0x312F),
                    (0x31A0, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))
# Code points from here on hold no letters, marks or digits (private use, tags, unassigned).
_LETTER_PLANES_END = 0x40000
_EMPTY_HASH = np.uint32(0xFFFFFFFF)
_CHUNK_ELEMENTS = 1 << 20  # MinHash works on (num_perm, chunk) blocks of this many uint32.
# Documents joined for batched hashing: a separator, so that no unit spans two of them.
_DOCUMENT_SEPARATOR = "\n"

# --- Exact duplicates ----------------------------------------------------------------------------


def fold(text: str) -> str:
  """NFKC and case folding, where both kinds of duplicate detection start.

  The functions below that take `folded=True` skip this step for text that is `fold(text)`
  already (it is the slowest step; `Deduplicator` folds each document once for both kinds).
  """
  return unicodedata.normalize("NFKC", text).casefold()


def normalize_for_exact(text: str, *, folded: bool = False) -> str:
  """`fold(text)` with whitespace runs collapsed to one space and the ends stripped."""
  return " ".join((text if folded else fold(text)).split())


def exact_key(text: str, *, folded: bool = False) -> bytes:
  """16-byte BLAKE2b of `normalize_for_exact(text)`."""
  data = normalize_for_exact(text, folded=folded).encode("utf-8", errors="surrogatepass")
  return hashlib.blake2b(data, digest_size=16).digest()


class ExactDeduper:
  """Remembers the key of every document added; memory: one 16-byte key per distinct text."""

  def __init__(self):
    self._first: dict[bytes, int] = {}

  def add(self, doc_id: int, text: str) -> int | None:
    """The id of the first document with the same `exact_key`, else None (and remembers it)."""
    return self.add_key(doc_id, exact_key(text))

  def add_key(self, doc_id: int, key: bytes) -> int | None:
    """As `add`, given the document's `exact_key`."""
    if key in self._first:
      return self._first[key]
    self._first[key] = doc_id
    return None

  def __len__(self) -> int:
    return len(self._first)


# --- Units and shingles --------------------------------------------------------------------------


@functools.cache
def _char_classes() -> np.ndarray:
  """The class of every code point: a separator (space, punctuation, symbol, control), a word
  character (letter, mark, digit) or a word character of a script written without spaces."""
  classes = np.zeros(sys.maxunicode + 1, np.uint8)
  for code in range(_LETTER_PLANES_END):
    if unicodedata.category(chr(code))[0] in "LMN":
      classes[code] = _WORD_CHAR
  for low, high in _NO_SPACE_RANGES:
    block = classes[low:high + 1]
    block[block == _WORD_CHAR] = _NO_SPACE_CHAR
  return classes


def choose_unit(text: str) -> str:
  """'char' if >= CHAR_SCRIPT_SHARE of the letters and digits of `text` are of scripts
  written without spaces, else 'word' (`contamination` picks its n-gram length with it)."""
  classes = _char_classes()[hashing.code_points(fold(text))]
  letters = np.count_nonzero(classes)
  no_space = np.count_nonzero(classes == _NO_SPACE_CHAR)
  return "char" if letters and no_space >= CHAR_SCRIPT_SHARE * letters else "word"


class UnitText:
  """A normalized text as a sequence of units, any run of which hashes in O(1):
  hash(units i..j) = (P[end_j] - P[start_i]) * BASE^-start_i from prefix sums P.

  Normalization: NFKC and case folding; spaces, punctuation, symbols and control characters
  only separate units, so `Hello, World!` and `hello world` have the same units. Units:
    word  runs of letters, marks and digits (a Chinese sentence is one unit)
    char  single letters, marks and digits (separators dropped)
    auto  words, except that every character of a script written without spaces (Chinese,
          Japanese, Thai, ...) is a unit of its own: mixed text needs no per-document choice,
          so an edit cannot flip how a document is shingled.
  Units keep one space between them in the hashed code points (so `ab c` and `a bc` differ).
  """

  def __init__(self, text: str, unit: str = "auto", *, folded: bool = False,
               config_key: str = "config.dedup.shingle_unit"):
    check_unit(unit, config_key)
    self.unit = unit
    codes = hashing.code_points(text if folded else fold(text))
    classes = _char_classes()[codes]
    if unit == "char":
      origins = np.flatnonzero(classes != _SEPARATOR)
      codes = codes[origins]
      self._starts = np.arange(len(codes))
      self._ends = self._starts + 1
    else:
      codes, origins = _join_units(codes, classes, split_no_space=unit == "auto")
      spaces = np.flatnonzero(codes == _SPACE)
      self._starts = np.concatenate(([0], spaces + 1)) if len(codes) else spaces
      self._ends = np.concatenate((spaces, [len(codes)])) if len(codes) else spaces
    self._origins = origins  # Where each unit starts in the text.
    self._codes = codes
    self._hash = hashing.PrefixHash(codes)
    self._document_units = np.array([0, len(self._starts)])  # Units of each document.

  @classmethod
  def of_documents(cls, texts: list[str], unit: str = "auto", *,
                   folded: bool = False) -> "UnitText":
    """One UnitText of several documents, whose `document_ngram_hashes` keep each run of units
    inside its document (hashed in one batch: far fewer numpy calls per document)."""
    texts = texts if folded else [fold(text) for text in texts]
    units = cls(_DOCUMENT_SEPARATOR.join(texts), unit, folded=True)
    beginnings = np.cumsum([0] + [len(text) + len(_DOCUMENT_SEPARATOR) for text in texts])
    # pylint: disable=protected-access
    units._document_units = np.searchsorted(units._origins, beginnings)
    units._document_units[-1] = len(units)
    return units

  def __len__(self) -> int:
    """The number of units."""
    return len(self._starts)

  def unit_documents(self) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: its document and where that document's units end."""
    document = np.repeat(np.arange(len(self._document_units) - 1),
                         np.diff(self._document_units))
    return document, self._document_units[1:][document]

  def ngram_hashes(self, n: int) -> np.ndarray:
    """Mixed uint64 hashes of every run of `n` units, in order (entry i starts at unit i); one
    hash of all units for a text shorter than `n`, none for an empty one."""
    return self.document_ngram_hashes(n)[0]

  def document_ngram_hashes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(`ngram_hashes` of every document one after the other, offsets: those of document k
    are entries offsets[k]:offsets[k + 1])."""
    first = self._document_units[:-1]
    count = np.diff(self._document_units)
    width = np.minimum(n, count)
    runs = np.where(count > 0, count - width + 1, 0)
    offsets = np.concatenate(([0], np.cumsum(runs)))
    starts = np.arange(offsets[-1]) + np.repeat(first - offsets[:-1], runs)
    return hashing.mix64(self.run_hashes(starts, np.repeat(width, runs))), offsets

  def run_hashes(self, starts: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """The raw polynomial hashes (not mixed) of the runs of `n` units at unit `starts`."""
    return self._hash.runs(self._starts[starts], self._ends[starts + n - 1])

  def text(self, start: int, stop: int) -> str:
    """Units [start, stop) as normalized text (characters of unit 'char' without spaces)."""
    if stop <= start:
      return ""
    run = self._codes[self._starts[start]:self._ends[stop - 1]]
    return run.tobytes().decode("utf-32-le", errors="surrogatepass")


def _join_units(codes: np.ndarray, classes: np.ndarray, *,
                split_no_space: bool) -> tuple[np.ndarray, np.ndarray]:
  """The word characters of `codes` with one space between units (see `UnitText`), and where
  in `codes` each unit starts."""
  keep = classes != _SEPARATOR
  positions = np.flatnonzero(keep)
  kept = codes[keep]
  starts = np.ones(len(kept), dtype=bool)
  starts[1:] = positions[1:] - positions[:-1] > 1  # Separators in between.
  if split_no_space:
    no_space = classes[keep] == _NO_SPACE_CHAR
    starts[1:] |= no_space[1:] | no_space[:-1]
  before = np.cumsum(starts) - 1  # Spaces before each kept character.
  joined = np.full(len(kept) + (before[-1] if len(kept) else 0), _SPACE, dtype=np.uint32)
  joined[np.arange(len(kept)) + before] = kept
  return joined, positions[starts]


def default_ngram(unit: str, n: int) -> int:
  """`n`, or the unit's default shingle size when `n` is 0."""
  return n or DEFAULT_NGRAM[unit]


def shingles(text: str, *, unit: str = "auto", n: int = 0,
             config_key: str = "config.dedup") -> np.ndarray:
  """Sorted distinct uint64 hashes of the word or character n-grams of `text`.

  Args:
    text: any text; normalized as in `UnitText`.
    unit: 'word', 'char' or 'auto' (see `UnitText`).
    n: units per shingle; 0 = DEFAULT_NGRAM of the unit. A text shorter than `n` units is one
      shingle; a text without letters or digits has none.
    config_key: prefix of the config keys named in errors (CONFIG_KEYS).
  """
  check_unit(unit, f"{config_key}.{CONFIG_KEYS['unit']}")
  check_int(n, f"{config_key}.{CONFIG_KEYS['n']}", low=0)
  units = UnitText(text, unit)
  return np.unique(units.ngram_hashes(default_ngram(units.unit, n)))


# --- MinHash -------------------------------------------------------------------------------------


class MinHasher:
  """MinHash signatures of shingle sets: each shingle's 64-bit hash is cut to its top 32 bits x,
  and `num_perm` seeded functions h_k(x) = a_k * x + b_k modulo 2^32 (a_k odd: permutations of
  the 32-bit values; 32-bit products vectorize where 64-bit ones do not) give a signature of
  their minima. Two signatures agree in a slot with probability equal to the Jaccard similarity
  of the two sets (the estimator's error matches the binomial one: tests/test_dedup.py)."""

  def __init__(self, num_perm: int = DEFAULT_NUM_PERM, *, seed: int = 0, unit: str = "auto",
               n: int = 0, config_key: str = "config.dedup"):
    check_num_perm(num_perm, config_key)
    check_unit(unit, f"{config_key}.{CONFIG_KEYS['unit']}")
    check_int(n, f"{config_key}.{CONFIG_KEYS['n']}", low=0)
    check_int(seed, f"{config_key}.{CONFIG_KEYS['seed']}", low=0)
    self.num_perm, self.seed, self.unit, self.n = num_perm, seed, unit, n
    rng = np.random.default_rng(seed)
    self._multipliers = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint32) | 1
    self._offsets = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint32)

  def signature(self, text: str, *, folded: bool = False) -> np.ndarray:
    """The uint32[num_perm] signature of `shingles(text)` (all 0xFFFFFFFF if it has none)."""
    return self.signatures([text], folded=folded)[0]

  def signatures(self, texts: list[str], *, folded: bool = False) -> np.ndarray:
    """The uint32[len(texts), num_perm] signatures of several texts, hashed in one batch."""
    units = UnitText.of_documents(texts, self.unit, folded=folded)
    return self.signatures_of(*units.document_ngram_hashes(default_ngram(self.unit, self.n)))

  def signature_of(self, hashes: np.ndarray) -> np.ndarray:
    """The signature of a set of uint64 shingle hashes."""
    return self.signatures_of(hashes, np.array([0, len(hashes)]))[0]

  def signatures_of(self, hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The signatures of sets of uint64 shingle hashes: set k is hashes[offsets[k]:offsets[k +
    1]]. Works on blocks of shingles; a set may span blocks."""
    values = (hashes >> np.uint64(32)).astype(np.uint32)
    signatures = np.full((len(offsets) - 1, self.num_perm), _EMPTY_HASH, dtype=np.uint32)
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    starts = offsets[nonempty]
    step = max(1, _CHUNK_ELEMENTS // self.num_perm)
    buffer = np.empty((self.num_perm, min(step, len(values))), np.uint32)  # Reused: no faults.
    for begin in range(0, len(values), step):
      block = buffer[:, :len(values[begin:begin + step])]  # [num_perm, shingles]
      np.multiply(self._multipliers[:, None], values[None, begin:begin + step], out=block)
      block += self._offsets[:, None]
      # The nonempty sets with shingles in this block, and where each begins in it.
      first = max(0, np.searchsorted(starts, begin, side="right") - 1)
      last = np.searchsorted(starts, begin + block.shape[1], side="left")
      sets = nonempty[first:last]
      cuts = np.maximum(starts[first:last], begin) - begin
      minima = np.minimum.reduceat(block, cuts, axis=1).T
      signatures[sets] = np.minimum(signatures[sets], minima)
    return signatures


def is_empty_signature(signature: np.ndarray) -> bool:
  """True for the signature of a text without shingles."""
  return bool(np.all(signature == _EMPTY_HASH))


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
  """The share of slots where two signatures agree."""
  return float(np.mean(a == b))


# --- LSH -----------------------------------------------------------------------------------------


def lsh_bands(threshold: float, num_perm: int, *, false_negative_weight: float = 0.5,
              config_key: str = "config.dedup") -> tuple[int, int]:
  """The (bands, rows) with bands * rows <= num_perm minimizing the weighted error areas.

  A pair of Jaccard similarity s shares a band with probability P(s) = 1 - (1 - s^rows)^bands.
  Minimizes (1 - w) * (area under P below `threshold`) + w * (area above P over it), with
  w = `false_negative_weight`.
  """
  check_threshold(threshold, f"{config_key}.{CONFIG_KEYS['threshold']}")
  check_num_perm(num_perm, config_key)
  similarity = np.linspace(0.0, 1.0, 1001)
  below = similarity < threshold
  best, best_error = (1, num_perm), np.inf
  for rows in range(1, num_perm + 1):
    bands = np.arange(1, num_perm // rows + 1)[:, None]
    candidate = 1.0 - (1.0 - similarity**rows)**bands
    false_positive = np.trapezoid(np.where(below, candidate, 0.0), similarity, axis=1)
    false_negative = np.trapezoid(np.where(below, 0.0, 1.0 - candidate), similarity, axis=1)
    error = ((1.0 - false_negative_weight) * false_positive +
             false_negative_weight * false_negative)
    i = int(np.argmin(error))
    if error[i] < best_error - 1e-12:
      best, best_error = (i + 1, rows), error[i]
  return best


def band_keys(signatures: np.ndarray, row_weights: np.ndarray,
              band_salts: np.ndarray) -> np.ndarray:
  """uint64 [n, bands] keys of the LSH bands of [n, num_perm] uint32 signatures: band b of a
  signature is its rows b * rows .. (b + 1) * rows - 1 (rows = len(row_weights)), weighted,
  summed, salted with band_salts[b] and mixed (arithmetic modulo 2^64)."""
  bands, rows = len(band_salts), len(row_weights)
  signatures = np.asarray(signatures)
  keys = np.broadcast_to(band_salts, (len(signatures), bands)).copy()
  for row in range(rows):  # One [n, bands] slice at a time: little memory beyond the result.
    keys += signatures[:, row:bands * rows:rows].astype(np.uint64) * row_weights[row]
  return hashing.mix64(keys)


class NearDuplicateIndex:
  """Signatures of the documents kept so far, bucketed by LSH band.

  Memory per kept document: its signature (4 * num_perm bytes) and one dict entry per band,
  ~3 KB in all at the defaults (128 permutations, 32 bands).
  """

  def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = DEFAULT_NUM_PERM, *,
               bands: int = 0, config_key: str = "config.dedup"):
    check_threshold(threshold, f"{config_key}.{CONFIG_KEYS['threshold']}")
    check_num_perm(num_perm, config_key)
    bands_key = f"{config_key}.{CONFIG_KEYS['bands']}"
    check_int(bands, bands_key, low=0)
    if bands and num_perm % bands:
      raise UserError(f"{bands_key}={bands}: must divide {config_key}.num_perm={num_perm}")
    self.threshold, self.num_perm = threshold, num_perm
    self.bands, self.rows = ((bands, num_perm // bands) if bands else
                             lsh_bands(threshold, num_perm, config_key=config_key))
    # Fixed odd weights that turn a band's rows into one 64-bit bucket key.
    rng = np.random.default_rng(0x15B)
    self._row_weights = rng.integers(0, 1 << 64, size=self.rows, dtype=np.uint64) | 1
    self._band_salts = rng.integers(0, 1 << 64, size=self.bands, dtype=np.uint64)
    self._signatures = np.zeros((64, num_perm), dtype=np.uint32)
    self._ids = np.zeros(64, dtype=np.int64)
    self._size = 0
    self._buckets: dict[int, int | list[int]] = {}  # Band key -> row(s) of _signatures.
    self._parent: dict[int, int] = {}  # Union-find over the ids of duplicates and their originals.

  def __len__(self) -> int:
    """The number of documents kept."""
    return self._size

  def add(self, doc_id: int, signature: np.ndarray) -> int | None:
    """The id of an earlier kept document with estimated Jaccard >= threshold (the most similar),
    or None: then this document is kept. Duplicates are not kept (only remembered for
    `clusters`), so memory grows with the distinct documents. Empty signatures are ignored."""
    signature = self._checked(signature)
    if is_empty_signature(signature):
      return None
    keys = self._band_keys(signature)
    matches = self._matches(signature, keys)
    if matches:
      original = matches[0][0]
      self._parent[doc_id] = self._root(original)
      return original
    self._keep(doc_id, signature, keys)
    return None

  def insert(self, doc_id: int, signature: np.ndarray) -> None:
    """Keeps a document without looking for duplicates (an index of reference documents)."""
    signature = self._checked(signature)
    if not is_empty_signature(signature):
      self._keep(doc_id, signature, self._band_keys(signature))

  def query(self, signature: np.ndarray) -> list[tuple[int, float]]:
    """(id, estimated Jaccard) of the kept documents with estimated Jaccard >= threshold, most
    similar first."""
    return self.query_many(self._checked(signature)[None])[0]

  def query_many(self, signatures: np.ndarray) -> list[list[tuple[int, float]]]:
    """`query` of each row of a [n, num_perm] block of signatures (band keys in one pass)."""
    keys = self.band_keys(signatures).tolist()
    return [[] if is_empty_signature(signature) else self._matches(signature, row_keys)
            for signature, row_keys in zip(signatures, keys)]

  def clusters(self) -> list[list[int]]:
    """Groups of >= 2 ids, each a kept document and the duplicates found of it, sorted."""
    groups: dict[int, list[int]] = {}
    for doc_id in self._parent:
      groups.setdefault(self._root(doc_id), []).append(doc_id)
    return sorted(sorted([root, *members]) for root, members in groups.items())

  def _root(self, doc_id: int) -> int:
    while doc_id in self._parent:
      doc_id = self._parent[doc_id]
    return doc_id

  def _checked(self, signature: Any) -> np.ndarray:
    signature = np.asarray(signature)
    if signature.shape != (self.num_perm,):
      raise ValueError(f"expected a signature of shape ({self.num_perm},), got {signature.shape}")
    return signature

  def band_keys(self, signatures: np.ndarray) -> np.ndarray:
    """The uint64 [n, bands] LSH bucket keys of a [n, num_perm] block of signatures (documents
    sharing a key in some band are candidate pairs)."""
    return band_keys(signatures, self._row_weights, self._band_salts)

  def _band_keys(self, signature: np.ndarray) -> list[int]:
    return self.band_keys(signature[None])[0].tolist()

  def _matches(self, signature: np.ndarray, keys: list[int]) -> list[tuple[int, float]]:
    rows = set()
    for key in keys:
      found = self._buckets.get(key)
      if isinstance(found, list):
        rows.update(found)
      elif found is not None:
        rows.add(found)
    if not rows:
      return []
    rows = np.fromiter(rows, dtype=np.int64, count=len(rows))
    similarity = np.mean(self._signatures[rows] == signature, axis=1)
    similar = similarity >= self.threshold - 1e-9
    pairs = zip(self._ids[rows[similar]].tolist(), similarity[similar].tolist())
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))

  def _keep(self, doc_id: int, signature: np.ndarray, keys: list[int]) -> None:
    if self._size == len(self._ids):
      self._signatures = np.concatenate([self._signatures, np.zeros_like(self._signatures)])
      self._ids = np.concatenate([self._ids, np.zeros_like(self._ids)])
    row = self._size
    self._signatures[row] = signature
    self._ids[row] = doc_id
    self._size += 1
    for key in keys:
      found = self._buckets.get(key)
      if found is None:
        self._buckets[key] = row
      elif isinstance(found, list):
        found.append(row)
      else:
        self._buckets[key] = [found, row]


# --- Both kinds, for the corpus-preparation pipeline ---------------------------------------------


@dataclasses.dataclass
class DedupStats:
  """Documents seen and the duplicates dropped, by kind."""

  documents: int = 0
  exact: int = 0
  near: int = 0

  @property
  def kept(self) -> int:
    return self.documents - self.exact - self.near

  def as_dict(self) -> dict[str, int]:
    return {"documents": self.documents, "exact": self.exact, "near": self.near,
            "kept": self.kept}


@dataclasses.dataclass(frozen=True)
class Duplicate:
  """A document found to duplicate the earlier document `of`; kind 'exact' or 'near'."""

  kind: str
  of: int


class Deduplicator:
  """Streaming exact then near-duplicate filter: `add` every document once, in order, and drop
  those it returns a `Duplicate` for."""

  def __init__(self, *, exact: bool = True, near: bool = True,
               threshold: float = DEFAULT_THRESHOLD, num_perm: int = DEFAULT_NUM_PERM,
               unit: str = "auto", n: int = 0, seed: int = 0, bands: int = 0,
               config_key: str = "config.dedup"):
    self.hasher = MinHasher(num_perm, seed=seed, unit=unit, n=n, config_key=config_key)
    self.stats = DedupStats()
    self._exact = ExactDeduper() if exact else None
    self._near = (NearDuplicateIndex(threshold, num_perm, bands=bands, config_key=config_key)
                  if near else None)

  def add(self, doc_id: int, text: str, *, signature: np.ndarray | None = None) -> Duplicate | None:
    """A `Duplicate` if `text` repeats an earlier document, else None (the document is kept).

    `signature`: `self.hasher.signature(text)` if already computed (e.g. for contamination).
    """
    self.stats.documents += 1
    text = fold(text)
    if self._exact is not None:
      original = self._exact.add_key(doc_id, exact_key(text, folded=True))
      if original is not None:
        self.stats.exact += 1
        return Duplicate("exact", original)
    if self._near is not None:
      if signature is None:
        signature = self.hasher.signature(text, folded=True)
      original = self._near.add(doc_id, signature)
      if original is not None:
        self.stats.near += 1
        return Duplicate("near", original)
    return None

  def clusters(self) -> list[list[int]]:
    """Near-duplicate clusters (ids), see `NearDuplicateIndex.clusters`."""
    return self._near.clusters() if self._near is not None else []


# --- Argument checks -----------------------------------------------------------------------------


def check_unit(unit: Any, config_key: str) -> None:
  """One of UNITS, else a UserError naming `config_key`."""
  if unit not in UNITS:
    raise UserError(f"{config_key}={unit!r}: choose one of {', '.join(UNITS)}")


def check_threshold(threshold: Any, config_key: str) -> None:
  """A number in (0, 1], else a UserError naming `config_key`."""
  if (isinstance(threshold, bool) or
      not isinstance(threshold, (int, float, np.integer, np.floating)) or
      not 0.0 < threshold <= 1.0):
    raise UserError(f"{config_key}={threshold!r}: must be a Jaccard similarity in (0, 1]")


def check_num_perm(num_perm: Any, config_key: str) -> None:
  """An integer >= MIN_NUM_PERM, else a UserError naming `config_key`.num_perm."""
  check_int(num_perm, f"{config_key}.{CONFIG_KEYS['num_perm']}", low=MIN_NUM_PERM)


def check_int(value: Any, config_key: str, *, low: int) -> None:
  """An integer (not a bool) >= low, else a UserError naming `config_key`."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise UserError(f"{config_key}={value!r}: must be an integer >= {low}")
