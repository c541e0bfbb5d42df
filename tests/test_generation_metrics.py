"""Tests for lm.evaluation.generation_metrics: sacreBLEU BLEU/chrF, ROUGE (Chinese too), Lead-n."""

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from lm.evaluation import generation_metrics
from lm.evaluation.generation_metrics import bleu_chrf, lead_n, rouge
from lm.errors import UserError


def _vocabulary(rng: np.random.Generator, size: int = 40) -> list[str]:
  """Random words: lowercase, Capitalized, and a few with digits or an apostrophe."""
  letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
  words = []
  for i in range(size):
    word = "".join(rng.choice(letters, rng.integers(2, 9)))
    if i % 4 == 0:
      word = word.capitalize()
    elif i % 7 == 0:
      word += "'s"
    elif i % 11 == 0:
      word += str(rng.integers(0, 100))
    words.append(word)
  return words


def _sentence(rng: np.random.Generator, vocabulary: list[str]) -> str:
  words = list(rng.choice(vocabulary, rng.integers(3, 15)))
  for i in range(len(words) - 1):
    if rng.random() < 0.15:
      words[i] += str(rng.choice([",", ";", ":"]))
  text = " ".join(words)
  return text[0].upper() + text[1:] + str(rng.choice([".", "!", "?", "."]))


def _perturb(rng: np.random.Generator, text: str, vocabulary: list[str]) -> str:
  """The text with some words replaced, dropped or added."""
  words = []
  for word in text.split():
    roll = rng.random()
    if roll < 0.15:
      words.append(str(rng.choice(vocabulary)))
    elif roll < 0.2:
      continue
    else:
      words.append(word)
    if rng.random() < 0.05:
      words.append(str(rng.choice(vocabulary)))
  return " ".join(words) or str(rng.choice(vocabulary))


def _corpus(seed: int, size: int = 60) -> tuple[list[str], list[str]]:
  rng = np.random.default_rng(seed)
  vocabulary = _vocabulary(rng)
  references = [_sentence(rng, vocabulary) for _ in range(size)]
  hypotheses = [_perturb(rng, reference, vocabulary) for reference in references]
  return hypotheses, references


def _summaries(seed: int, size: int = 30) -> tuple[list[str], list[str]]:
  """Multi-sentence summaries, one sentence per line."""
  rng = np.random.default_rng(seed)
  vocabulary = _vocabulary(rng)
  references, hypotheses = [], []
  for _ in range(size):
    sentences = [_sentence(rng, vocabulary) for _ in range(rng.integers(1, 4))]
    references.append("\n".join(sentences))
    kept = [_perturb(rng, s, vocabulary) for s in sentences if rng.random() < 0.8]
    rng.shuffle(kept)
    hypotheses.append("\n".join(kept + [_sentence(rng, vocabulary)] * int(rng.random() < 0.3)))
  return hypotheses, references


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_chrf_equal_sacrebleu(seed):
  hypotheses, references = _corpus(seed)
  scores = bleu_chrf(hypotheses, references)
  expected_bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
  expected_chrf = sacrebleu.corpus_chrf(hypotheses, [references]).score
  assert 5.0 < expected_bleu < 95.0  # A corpus that tells scores apart.
  assert scores["bleu"] == pytest.approx(expected_bleu, abs=1e-9)
  assert scores["chrf"] == pytest.approx(expected_chrf, abs=1e-9)
  assert isinstance(scores["bleu"], float) and isinstance(scores["chrf"], float)
  assert scores["bleu_signature"] == (f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:"
                                      f"{sacrebleu.__version__}")
  assert scores["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|")


def test_bleu_of_identical_text_is_100():
  _, references = _corpus(3, size=20)
  scores = bleu_chrf(references, references)
  assert scores["bleu"] == pytest.approx(100.0)
  assert scores["chrf"] == pytest.approx(100.0)


def test_case_matters():
  _, references = _corpus(4, size=20)
  lowered = bleu_chrf([r.lower() for r in references], references)
  assert lowered["bleu"] < 90.0
  assert lowered["chrf"] < 95.0
  assert lowered["bleu"] == pytest.approx(
      sacrebleu.corpus_bleu([r.lower() for r in references], [references]).score)


def test_bleu_chinese_tokenization():
  hypotheses, references = ["我爱北京天安门。", "今天天气很好"], ["我爱北京故宫。", "今天天气不错"]
  zh = bleu_chrf(hypotheses, references, tokenize="zh")
  assert zh["bleu"] == pytest.approx(
      sacrebleu.corpus_bleu(hypotheses, [references], tokenize="zh").score)
  assert zh["bleu"] > 10.0
  assert "|tok:zh|" in zh["bleu_signature"]
  # 13a leaves an unspaced Chinese sentence one word (and its '。' another).
  assert bleu_chrf(hypotheses, references)["bleu"] < zh["bleu"]
  with pytest.raises(ValueError, match="tokenize must be one of"):
    bleu_chrf(hypotheses, references, tokenize="spm")


@pytest.mark.parametrize("seed", [5, 6])
def test_rouge_equals_rouge_score_averaged(seed):
  hypotheses, references = _summaries(seed)
  scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
  per_example = [scorer.score(r, h) for h, r in zip(hypotheses, references)]
  scores = rouge(hypotheses, references)
  assert set(scores) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
  for rouge_type, value in scores.items():
    expected = 100.0 * np.mean([s[rouge_type].fmeasure for s in per_example])
    assert value == pytest.approx(expected, abs=1e-9), rouge_type
    assert 5.0 < value < 95.0
  assert scores["rougeLsum"] != pytest.approx(scores["rougeL"])


def test_rouge_lsum_splits_sentences_at_newlines():
  reference = "The cat sat on the mat.\nDogs bark at night."
  hypothesis = "Dogs bark at night.\nThe cat sat on the mat."
  scores = rouge([hypothesis], [reference])
  assert scores["rouge1"] == pytest.approx(100.0)
  assert scores["rougeLsum"] == pytest.approx(100.0)  # Each sentence matched on its own.
  assert scores["rougeL"] == pytest.approx(100.0 * 6 / 10)  # LCS 'the cat sat on the mat'.
  # Stemmed: 'barking' matches 'bark'.
  assert rouge(["dogs barking"], ["dog barks"])["rouge1"] == pytest.approx(100.0)


def test_rouge_chinese_by_characters():
  hypotheses, references = ["我爱北京"], ["我爱上海"]
  scores = rouge(hypotheses, references)  # Detected as Chinese.
  # Characters: 我 爱 北 京 / 我 爱 上 海: 2 of 4 unigrams, 1 of 3 bigrams (我爱), LCS 2.
  assert scores["rouge1"] == pytest.approx(50.0)
  assert scores["rouge2"] == pytest.approx(100.0 / 3)
  assert scores["rougeL"] == pytest.approx(50.0)
  assert scores["rougeLsum"] == pytest.approx(50.0)
  assert rouge(hypotheses, references, chinese=True) == scores
  # The default tokenizer keeps [a-z0-9] only: no tokens at all, every score 0.
  assert rouge(hypotheses, references, chinese=False) == dict.fromkeys(scores, 0.0)
  default = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
  assert default.score(references[0], hypotheses[0])["rouge1"].fmeasure == 0.0


def test_rouge_chinese_mixed_with_latin_and_punctuation():
  # Tokens: 用 gpt4 写 代 码 / 我 用 gpt4 写 代 码: 5 of 5 hypothesis tokens in the reference's 6.
  scores = rouge(["用GPT4写代码！"], ["我用 gpt4 写代码。"])
  assert scores["rouge1"] == pytest.approx(100.0 * 2 * 5 / (5 + 6))
  assert scores["rougeL"] == pytest.approx(100.0 * 2 * 5 / (5 + 6))


def test_chinese_tokenizer_and_detection():
  tokenizer = generation_metrics.ChineseTokenizer()
  assert tokenizer.tokenize("GPT4模型，很好! Très_bien") == ["gpt4", "模", "型", "很", "好", "très",
                                                            "bien"]
  assert generation_metrics.is_mostly_chinese(["我用 Python 写代码。"])
  assert not generation_metrics.is_mostly_chinese(["I wrote 代码 in Python today."])
  assert not generation_metrics.is_mostly_chinese(["", "..."])


def test_lead_n_of_a_dialogue():
  dialogue = ("Amanda: I baked cookies. Do you want some?\r\n"
              "Jerry: Sure!\r\n"
              "\r\n"
              "  Amanda: I'll bring you tomorrow :-)  \r\n"
              "Jerry: Thanks!\r\n")
  assert lead_n(dialogue) == ("Amanda: I baked cookies. Do you want some?\nJerry: Sure!\n"
                              "Amanda: I'll bring you tomorrow :-)")
  assert lead_n(dialogue, n=1) == "Amanda: I baked cookies. Do you want some?"
  assert lead_n(dialogue, n=10).count("\n") == 3  # All four utterances.
  assert lead_n(dialogue, n=0) == ""
  with pytest.raises(ValueError):
    lead_n(dialogue, n=-1)


def test_generation_metrics_keys_and_values():
  hypotheses, references = _corpus(7, size=20)
  translation = generation_metrics.generation_metrics(hypotheses, references, "translation")
  direct = bleu_chrf(hypotheses, references)
  assert translation == {"eval/bleu": direct["bleu"], "eval/chrf": direct["chrf"]}
  summarization = generation_metrics.generation_metrics(hypotheses, references, "summarization")
  assert summarization == {f"eval/{k}": v for k, v in rouge(hypotheses, references).items()}
  assert all(isinstance(v, float) for v in {**translation, **summarization}.values())
  chinese = generation_metrics.generation_metrics(["我爱北京"], ["我爱上海"], "summarization")
  assert chinese["eval/rouge1"] == pytest.approx(50.0)
  with pytest.raises(ValueError, match="kind must be one of"):
    generation_metrics.generation_metrics(hypotheses, references, "classification")


@pytest.mark.parametrize("score", [
    bleu_chrf,
    rouge,
    lambda h, r: generation_metrics.generation_metrics(h, r, "translation"),
    lambda h, r: generation_metrics.generation_metrics(h, r, "summarization"),
])
def test_mismatched_or_empty_inputs_raise_user_error(score):
  with pytest.raises(UserError, match="2 generated texts but 3 references"):
    score(["a b", "c d"], ["a b", "c d", "e f"])
  with pytest.raises(UserError, match="empty"):
    score([], [])
