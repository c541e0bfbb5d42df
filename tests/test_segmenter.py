"""Chinese word segmentation (jieba): round trips, the word tokenizer and the TF-IDF baseline on
jieba's words, and Chinese stop words removed as whole words."""

import numpy as np
import pytest

from lm.data import segmenter, tokenizers
from lm.data.prepare import cleaning
from lm.data.word_tokenizer import WordTokenizer, normalize
from lm.errors import UserError

TEXTS = ["我们今天在公园里散步，天气很好。", "北京大学的学生在图书馆学习 JAX 和 Flax",
         "我不喜欢这部电影\n但是演员的表演很精彩"]


def test_jieba_pieces_round_trip_and_words_are_chinese_words():
  for text in TEXTS:
    assert "".join(segmenter.pieces(text)) == text
  assert segmenter.words(TEXTS[0], "jieba")[:6] == ["我们", "今天", "在", "公园", "里", "散步"]
  assert segmenter.words("a  b\tc", "") == ["a", "b", "c"]
  assert segmenter.join(["北京大学", "的", "JAX", "和", "Flax", "rocks"]) == "北京大学的JAX和Flax rocks"
  with pytest.raises(UserError, match="config.data.word_segmenter='thulac'"):
    segmenter.words("x", "thulac")


def test_word_tokenizer_on_jieba_words_round_trips_and_saves_its_segmenter(tmp_path):
  tokenizer = WordTokenizer.train(TEXTS, vocab_size=100, segmenter="jieba")
  assert "北京大学" in tokenizer.words and "我们今天在公园里散步" not in tokenizer.words
  for text in TEXTS:
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == normalize(text, "jieba")
    assert len(ids) < len(text.replace(" ", "")) * 0.8  # Words, not characters.
  assert normalize(TEXTS[1], "jieba") == "北京大学的学生在图书馆学习JAX和Flax"
  tokenizer.save(str(tmp_path / "tok"))
  loaded = tokenizers.load_tokenizer(str(tmp_path / "tok"))
  assert loaded.segmenter == "jieba" and loaded.encode(TEXTS[0]) == tokenizer.encode(TEXTS[0])
  # A segmented CJK word is not followed by a space: its bytes alone.
  word = "北京大学"
  assert tokenizer.token_bytes()[tokenizer.encode(word)[0]] == len(word.encode())
  spaced = WordTokenizer.train(TEXTS, vocab_size=100)
  assert "我们今天在公园里散步，天气很好。" in spaced.words


def test_chinese_stop_words_go_as_whole_words():
  cleaner = cleaning.Cleaner(stopwords=cleaning.parse_stopwords("chinese"))
  cleaned, counts = cleaner.clean("我的书和他的目的")
  assert cleaned == "书目的" and counts["stopwords"] == 5  # 我, 的, 和, 他, 的; 目的 stays.
  assert cleaner.clean("我不喜欢")[0] == "不喜欢"  # Negations are kept.
  mixed = cleaning.Cleaner(stopwords=("the", "的"))
  assert mixed.clean("the book 的 书")[0] == "book 书"


def test_tfidf_uses_jieba_words(tmp_path):
  from lm.models import tfidf  # pylint: disable=g-import-not-at-top
  from tests.test_tfidf import chinese_reviews_config  # pylint: disable=g-import-not-at-top
  from lm.training import trainer  # pylint: disable=g-import-not-at-top
  config = chinese_reviews_config(tmp_path)
  config.data.word_segmenter = "jieba"
  config.tfidf.update(min_df=1, ngram_max=1)
  metrics = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  vocabulary = tfidf.load(str(tmp_path / "run"))[0].vocabulary_
  assert {"电影", "演员", "喜欢"} <= set(vocabulary) and metrics["eval/accuracy"] == 1.0
  assert np.isfinite(metrics["eval/loss"])


def test_whole_word_masking_on_chinese_masks_whole_jieba_words():
  from lm.data import masking  # pylint: disable=g-import-not-at-top
  from lm.tasks.language_model import Masker  # pylint: disable=g-import-not-at-top
  from lm import defaults  # pylint: disable=g-import-not-at-top
  text = "北京大学的学生在图书馆学习，我们今天在公园里散步"
  tokenizer = tokenizers.CharTokenizer.train([text])
  tokens_BxT = np.array([tokenizer.encode(text)] * 4, np.int32)
  starts = masking.segment_starts(tokens_BxT[:1], masking.token_texts(tokenizer))[0]
  words = segmenter.words(text, "jieba")
  assert starts.sum() == len(words) and list(np.cumsum([len(w) for w in words]) - [
      len(w) for w in words]) == list(np.flatnonzero(starts))
  mlm = defaults.base_config().mlm
  mlm.update(whole_word=True, mask_rate=0.25)
  masker = Masker(mlm, tokenizer, seq_len=len(text), word_segmenter="jieba")
  span_of = np.cumsum(starts) - 1  # Each character's word.
  masked_any = False
  for step in range(10):
    batch = masker.windows(tokens_BxT, seed=0, step=step, rows=np.arange(4))
    for b in range(4):
      chosen = set(batch["output_positions"][b][batch["weights"][b] > 0].tolist())
      masked_any |= bool(chosen)
      for word in set(span_of[sorted(chosen)].tolist()):
        assert set(np.flatnonzero(span_of == word).tolist()) <= chosen  # Whole words.
  assert masked_any
  with pytest.raises(UserError, match="whole_word needs a sentencepiece tokenizer"):
    Masker(mlm, tokenizer, seq_len=len(text))  # Characters without a segmenter: no words.
