"""Scores of generated text: BLEU and chrF (sacreBLEU) for translation, ROUGE for summarization.

BLEU and chrF are sacreBLEU's corpus scores with its default settings (cased, 13a tokenization of
detokenized text, one reference per example); report them with their signatures (`bleu_chrf`).
ROUGE is Google's `rouge_score` (a Python port of the ROUGE-1.5.5 Perl script), F-measure averaged
over examples. Scores are on a 0-100 scale. Chinese text: BLEU takes tokenize='zh', ROUGE splits it
into characters (`rouge`).
"""

import re
from typing import Any, Sequence

from lm.errors import UserError

KINDS = ("translation", "summarization")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# sacreBLEU tokenizers that need neither extra packages (ja-mecab, ko-mecab) nor a download
# (spm, flores101, flores200, spBLEU-1K).
BLEU_TOKENIZERS = ("13a", "intl", "zh", "char", "none")
# Han characters: CJK radicals, 々 〇 and Hangzhou numerals, the unified ideographs with their
# extensions, and the compatibility ideographs.
_HAN = ("\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff"
        "\uf900-\ufaff\U00020000-\U0003ffff")
_HAN_RE = re.compile(f"[{_HAN}]")
# One Han character, or a run of other letters and digits; punctuation and spaces split.
_CHINESE_TOKEN_RE = re.compile(f"[{_HAN}]|[^\\W_{_HAN}]+")


def bleu_chrf(hypotheses: Sequence[str],
              references: Sequence[str],
              tokenize: str = "13a") -> dict[str, Any]:
  """sacreBLEU corpus BLEU and chrF of `hypotheses` against one reference each.

  Text is detokenized (as written); case counts. `tokenize` is BLEU's tokenizer: '13a' (the
  WMT default), 'zh' for Chinese, or 'intl', 'char', 'none'. chrF (character 6-grams, beta 2)
  tokenizes nothing. Returns {"bleu", "chrf"} (0-100) and {"bleu_signature", "chrf_signature"}
  (e.g. 'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0') to report with them.
  """
  from sacrebleu.metrics import BLEU, CHRF  # pylint: disable=g-import-not-at-top

  hypotheses, references = _check_pairs(hypotheses, references)
  if tokenize not in BLEU_TOKENIZERS:
    raise ValueError(f"tokenize must be one of {', '.join(BLEU_TOKENIZERS)}, got {tokenize!r}")
  bleu, chrf = BLEU(tokenize=tokenize), CHRF()
  bleu_score = bleu.corpus_score(hypotheses, [references])
  chrf_score = chrf.corpus_score(hypotheses, [references])
  return {
      "bleu": float(bleu_score.score),
      "chrf": float(chrf_score.score),
      "bleu_signature": str(bleu.get_signature()),
      "chrf_signature": str(chrf.get_signature()),
  }


def rouge(hypotheses: Sequence[str],
          references: Sequence[str],
          chinese: bool | None = None) -> dict[str, float]:
  """ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (0-100), averaged over examples.

  rouge_score's default tokenizer: lowercased runs of [a-z0-9] (everything else dropped), Porter
  stemmed. rougeLsum is the summary-level LCS over sentences, which are the lines of the text:
  put one sentence per line ('\\n'); rouge1/2/L ignore the line breaks. Chinese text (`chinese`
  True, or None and most tokens of the references are Han characters) would lose every Han
  character to the default tokenizer, so it is split into characters instead (`ChineseTokenizer`,
  no stemming).
  """
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top  # Imports nltk.

  hypotheses, references = _check_pairs(hypotheses, references)
  if chinese is None:
    chinese = is_mostly_chinese(references)
  # split_summaries=False: rougeLsum splits at '\n' (True would need nltk's punkt data).
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES),
                                    use_stemmer=not chinese,
                                    split_summaries=False,
                                    tokenizer=ChineseTokenizer() if chinese else None)
  totals = dict.fromkeys(ROUGE_TYPES, 0.0)
  for hypothesis, reference in zip(hypotheses, references):
    scores = scorer.score(reference, hypothesis)  # (target, prediction).
    for rouge_type in ROUGE_TYPES:
      totals[rouge_type] += scores[rouge_type].fmeasure
  return {rouge_type: 100.0 * total / len(hypotheses) for rouge_type, total in totals.items()}


class ChineseTokenizer:
  """rouge_score tokenizer for Chinese: each Han character is a token, and so is each run of
  other letters or digits (lowercased: 'GPT4模型' -> ['gpt4', '模', '型']); punctuation, like the
  default tokenizer's, is dropped."""

  def tokenize(self, text: str) -> list[str]:
    return _CHINESE_TOKEN_RE.findall(text.lower())


def is_mostly_chinese(texts: Sequence[str]) -> bool:
  """Whether more than half of the tokens of `texts` (as `ChineseTokenizer` splits them) are Han
  characters."""
  tokens = [token for text in texts for token in _CHINESE_TOKEN_RE.findall(text)]
  han = sum(1 for token in tokens if _HAN_RE.fullmatch(token))
  return 2 * han > len(tokens)


def lead_n(text: str, n: int = 3) -> str:
  """The Lead-n summarization baseline: the first `n` sentences of a document, one per line.

  The document must hold one sentence (or utterance) per line; blank lines are skipped and lines
  stripped. A SAMSum dialogue has one utterance per line ('Amanda: I baked cookies.'), so Lead-3
  is its first three utterances.
  """
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  lines = (line.strip() for line in text.splitlines())
  return "\n".join([line for line in lines if line][:n])


def generation_metrics(hypotheses: Sequence[str],
                       references: Sequence[str],
                       kind: str,
                       *,
                       tokenize: str = "13a",
                       chinese: bool | None = None) -> dict[str, float]:
  """Validation metrics to log, on a 0-100 scale: 'translation' -> `eval/bleu`, `eval/chrf`
  (`bleu_chrf`, BLEU tokenized with `tokenize`); 'summarization' -> `eval/rouge1`,
  `eval/rouge2`, `eval/rougeL`, `eval/rougeLsum` (`rouge`). Signatures: call `bleu_chrf`.
  """
  if kind == "translation":
    scores = bleu_chrf(hypotheses, references, tokenize=tokenize)
    return {f"eval/{name}": scores[name] for name in ("bleu", "chrf")}
  if kind == "summarization":
    return {f"eval/{name}": value for name, value in rouge(hypotheses, references, chinese).items()}
  raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _check_pairs(hypotheses: Sequence[str],
                 references: Sequence[str]) -> tuple[list[str], list[str]]:
  hypotheses, references = list(hypotheses), list(references)
  if len(hypotheses) != len(references):
    raise UserError(f"{len(hypotheses)} generated texts but {len(references)} references: each"
                    " example needs one of each, in the same order")
  if not hypotheses:
    raise UserError("no generated texts to score: the evaluation set is empty")
  return hypotheses, references
