"""Extractive question answering data: questions over contexts, and the windows a model reads.

Files (`read_questions`):
  .json (or .json.gz)  SQuAD v1.1: {"data": [{"paragraphs": [{"context", "qas": [{"id",
                       "question", "answers": [{"text", "answer_start"}]}]}]}]} (CMRC 2018 too);
                       or a JSON list of the flat objects below
  .jsonl               one question a line: `question`, `context`, `answers` (a list of
                       {"text", "answer_start"}, or Hugging Face datasets' {"text": [...],
                       "answer_start": [...]}), optional `id` (default: the line number)
Answers are optional where nothing is trained (`lm.predict`).

Answer offsets: the first answer is what training points at. Where its text is not at its
`answer_start` (CMRC 2018 dev has 193 answers with -1 and 7 with wrong offsets), the occurrence
of the text nearest to `answer_start` is used and counted as relocated; a first answer whose text
is not in the context at all is skipped in training and counted, its id named in the log.
Evaluation scores against every reference text, whatever its offset. An empty context or
question is an error naming the file and the question's id.

Windows (`encode_windows`): the context is split into units (`context_units`: one CJK character,
a run of letters and digits, or one other non-space character, as BERT's basic tokenizer splits
text), each unit encoded on its own, so every token knows the characters it came from and an
answer maps back to the exact text of the context. A window is

  [CLS] question [SEP] context tokens [SEP]     token types 0 up to the first [SEP], then 1

with the question cut to `max_question_tokens`. With `question_match`, a context token whose unit
also occurs in the question (case-insensitive) gets type 2 instead of 1: DrQA's exact-match
feature (Chen et al. 2017), a strong hint for a reader trained on little data; a context longer than the rest is covered by
windows that start `doc_stride` tokens apart (BERT's meaning of doc_stride: the step between
windows, not their overlap), so every context token is in at least one window. A window's
targets are the answer's first and last tokens, or position 0 ([CLS]) for both where the answer
is not wholly inside it (as BERT trains SQuAD v1.1).
"""

import dataclasses
import json
import re
from typing import Any

import numpy as np

from lm.data import cjk, text_files
from lm.data.tokenizer_base import Tokenizer
from lm.errors import UserError

_CJK = cjk.IDEOGRAPHS
_UNIT = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+|\S")
NO_ANSWER = -1


@dataclasses.dataclass(frozen=True)
class Question:
  """One question over a context; `answers` are the reference texts (possibly none), `start`
  the character offset of the first one in the context as trained (NO_ANSWER: none to train
  on)."""
  id: str
  question: str
  context: str
  answers: tuple[str, ...]
  start: int
  where: str


@dataclasses.dataclass
class QuestionFile:
  questions: list[Question]
  relocated: list[str]  # Ids whose first answer was found away from its answer_start.
  unanswerable: list[str]  # Ids whose first answer text is not in the context.
  ids: set[str] = dataclasses.field(default_factory=set)

  @property
  def has_answers(self) -> bool:
    return any(q.answers for q in self.questions)


def read_questions(path: str, *, config_key: str, encoding_errors: str = "strict") -> QuestionFile:
  """The questions of a SQuAD-style .json or a .jsonl file (module docstring)."""
  extension = text_files.inner_extension(path)
  if extension not in (".json", ".jsonl"):
    raise UserError(f"{config_key}={path}: questions are read from SQuAD .json or .jsonl files,"
                    f" not {extension or 'a file without extension'}")
  out = QuestionFile([], [], [])
  if extension == ".jsonl":
    for line, text in text_files.decoded_lines(path, encoding_errors):
      if text.strip():
        where = f"{path}:{line}"
        _add(out, text_files.parse_json_line(text, where), str(line), where)
    return out
  text = text_files.decode_utf8(text_files.read_bytes(path), encoding_errors, where=path)
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
  if isinstance(data, list):
    for number, item in enumerate(data, start=1):
      _add(out, _object(item, f"{path}: item {number}"), str(number), f"{path}: item {number}")
    return out
  if not isinstance(data, dict) or not isinstance(data.get("data"), list):
    raise UserError(f"{path}: expected SQuAD JSON ({{\"data\": [articles]}}) or a list of "
                    f"questions")
  for a, article in enumerate(data["data"]):
    for p, paragraph in enumerate(_object(article, f"{path}: article {a}").get("paragraphs", [])):
      paragraph = _object(paragraph, f"{path}: article {a} paragraph {p}")
      for q, qa in enumerate(paragraph.get("qas", [])):
        qa = _object(qa, f"{path}: article {a} paragraph {p} question {q}")
        qid = str(qa.get("id", f"{a}.{p}.{q}"))
        _add(out, {**qa, "context": paragraph.get("context")}, qid, f"{path}: question {qid}")
  return out


def _object(item: Any, where: str) -> dict:
  if not isinstance(item, dict):
    raise UserError(f"{where}: expected a JSON object, got {type(item).__name__}")
  return item


def _add(out: QuestionFile, item: dict, default_id: str, where: str) -> None:
  qid = str(item.get("id", default_id))
  where = where if qid in where else f"{where} (id {qid})"
  if qid in out.ids:
    raise UserError(f"{where}: a second question with id {qid}; ids must be unique")
  out.ids.add(qid)
  question, context = item.get("question"), item.get("context")
  for name, value in (("question", question), ("context", context)):
    if not isinstance(value, str) or not value.strip():
      raise UserError(f"{where}: empty or missing {name}")
  texts, starts = _answers(item.get("answers"), where)
  start = NO_ANSWER
  if texts:
    start = answer_offset(context, texts[0], starts[0])
    if start == NO_ANSWER:
      out.unanswerable.append(qid)
    elif start != starts[0]:
      out.relocated.append(qid)
  out.questions.append(Question(qid, question, context, tuple(texts), start, where))


def _answers(answers: Any, where: str) -> tuple[list[str], list[int]]:
  """(texts, answer_starts) of the `answers` field in either layout; blank texts dropped."""
  if answers is None:
    return [], []
  if isinstance(answers, dict):  # Hugging Face datasets: {"text": [...], "answer_start": [...]}.
    texts, starts = answers.get("text", []), answers.get("answer_start", [])
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
      raise UserError(f"{where}: answers must hold equally long 'text' and 'answer_start' lists")
    pairs = list(zip(texts, starts))
  elif isinstance(answers, list):
    pairs = [(a.get("text"), a.get("answer_start", NO_ANSWER)) for a in
             (_object(a, f"{where}: answer") for a in answers)]
  else:
    raise UserError(f"{where}: answers must be a list of {{text, answer_start}}")
  kept = [(text, start) for text, start in pairs if isinstance(text, str) and text.strip()]
  for _, start in kept:
    if not isinstance(start, int):
      raise UserError(f"{where}: answer_start must be an integer, got {start!r}")
  return [t for t, _ in kept], [s for _, s in kept]


def answer_offset(context: str, text: str, start: int) -> int:
  """Where `text` is in `context`: at `start` if it is there, else its occurrence nearest to
  `start`; NO_ANSWER where it does not occur."""
  if 0 <= start and context[start:start + len(text)] == text:
    return start
  found = [m.start() for m in re.finditer(re.escape(text), context)]
  return min(found, key=lambda at: abs(at - start)) if found else NO_ANSWER


def context_units(text: str) -> np.ndarray:
  """int64 [U, 2]: the [begin, end) characters of every unit of `text` (module docstring);
  whitespace belongs to no unit."""
  spans = [m.span() for m in _UNIT.finditer(text)]
  return np.array(spans, np.int64).reshape(-1, 2)


@dataclasses.dataclass
class Windows:
  """Encoded windows of questions (what the model reads).

  tokens[i], token_types[i] int32 [L_i]; chars[i] int64 [L_i, 2]: the context characters of each
  token ([-1, -1] for the question and specials); starts, ends int32 [N]: the answer's first and
  last token in window i (0 = [CLS]: not in this window); question int64 [N]: the question of
  window i.
  """
  tokens: list[np.ndarray]
  token_types: list[np.ndarray]
  chars: list[np.ndarray]
  starts: np.ndarray
  ends: np.ndarray
  question: np.ndarray
  pad_id: int
  num_cut_questions: int  # Questions cut to max_question_tokens.

  def __len__(self) -> int:
    return len(self.tokens)

  @property
  def lengths(self) -> np.ndarray:
    return np.array([len(t) for t in self.tokens], dtype=np.int64)


class _UnitEncoder:
  """Encodes contexts unit by unit, remembering every unit's ids (contexts repeat across
  questions, units across contexts)."""

  def __init__(self, tokenizer: Tokenizer):
    self.tokenizer = tokenizer
    self._units: dict[str, np.ndarray] = {}
    self._contexts: dict[str, tuple[np.ndarray, np.ndarray]] = {}

  def unit_ids(self, unit: str) -> np.ndarray:
    if unit not in self._units:
      ids = self.tokenizer.encode_array(unit).astype(np.int32)
      # A unit the tokenizer drops still takes a token, so that its characters can be answers.
      self._units[unit] = ids if len(ids) else np.array([self.tokenizer.special_ids.unk], np.int32)
    return self._units[unit]

  def context(self, text: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [C], chars int64 [C, 2]) of a context's tokens."""
    if text not in self._contexts:
      spans = context_units(text)
      pieces = [self.unit_ids(text[b:e]) for b, e in spans]
      counts = [len(p) for p in pieces]
      ids = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
      self._contexts[text] = ids, np.repeat(spans, counts, axis=0)
    return self._contexts[text]


def answer_tokens(chars_Cx2: np.ndarray, start: int, length: int) -> tuple[int, int] | None:
  """The first and last context tokens that overlap characters [start, start + length)."""
  overlap = np.flatnonzero((chars_Cx2[:, 1] > start) & (chars_Cx2[:, 0] < start + length))
  return (int(overlap[0]), int(overlap[-1])) if len(overlap) else None


def matches_question(question: str, context: str, chars_Cx2: np.ndarray) -> np.ndarray:
  """int32 [C]: 1 where the unit of a context token also occurs in the question."""
  units = {question[b:e].lower() for b, e in context_units(question)}
  return np.array([context[b:e].lower() in units for b, e in chars_Cx2], np.int32)


def window_starts(num_tokens: int, budget: int, stride: int) -> list[int]:
  """Start tokens of windows of `budget` tokens, `stride` apart, covering `num_tokens`."""
  starts = [0]
  while starts[-1] + budget < num_tokens:
    starts.append(starts[-1] + min(stride, budget))
  return starts


def encode_windows(questions: list[Question], tokenizer: Tokenizer, *, max_len: int,
                   doc_stride: int, max_question_tokens: int, question_match: bool = False,
                   encoder: _UnitEncoder | None = None) -> Windows:
  """The windows of every question (module docstring); questions without a trainable answer
  get [CLS] targets everywhere."""
  ids = tokenizer.special_ids
  encoder = encoder or _UnitEncoder(tokenizer)
  out = Windows([], [], [], [], [], [], ids.pad, 0)
  for index, q in enumerate(questions):
    question_ids = tokenizer.encode_array(q.question).astype(np.int32)
    if len(question_ids) > max_question_tokens:
      question_ids = question_ids[:max_question_tokens]
      out.num_cut_questions += 1
    head = np.concatenate([[ids.cls], question_ids, [ids.sep]]).astype(np.int32)
    budget = max_len - len(head) - 1
    if budget < 1:
      raise UserError(f"config.model.max_len={max_len} leaves no room for the context after a "
                      f"question of {len(question_ids)} tokens; lower "
                      f"config.task.max_question_tokens or raise max_len")
    context_ids, chars = encoder.context(q.context)
    context_types = (1 + matches_question(q.question, q.context, chars)
                     if question_match else np.ones(len(context_ids), np.int32))
    answer = (answer_tokens(chars, q.start, len(q.answers[0]))
              if q.start != NO_ANSWER else None)
    for first in window_starts(len(context_ids), budget, doc_stride):
      last = min(first + budget, len(context_ids))
      body = context_ids[first:last]
      out.tokens.append(np.concatenate([head, body, [ids.sep]]).astype(np.int32))
      out.token_types.append(
          np.concatenate([np.zeros(len(head)), context_types[first:last], [1]]).astype(np.int32))
      outside = np.full((len(head), 2), -1, np.int64)
      out.chars.append(np.concatenate([outside, chars[first:last], [[-1, -1]]]))
      inside = answer is not None and first <= answer[0] and answer[1] < last
      offset = len(head) - first
      out.starts.append(answer[0] + offset if inside else 0)
      out.ends.append(answer[1] + offset if inside else 0)
      out.question.append(index)
  out.starts = np.array(out.starts, np.int32)
  out.ends = np.array(out.ends, np.int32)
  out.question = np.array(out.question, np.int64)
  return out
