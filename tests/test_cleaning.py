"""Tests of lm/data/prepare/cleaning.py: each step, its counts, and properties (hypothesis) over
arbitrary Unicode, bytes, CJK, Arabic, combining marks and emoji."""

import unicodedata

from hypothesis import HealthCheck, given, settings, strategies as st

from lm.data.prepare import cleaning
from lm.data.prepare.cleaning import Cleaner

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALL_STEPS = Cleaner(stopwords=cleaning.ENGLISH_STOPWORDS, lowercase=True)

# Text mixing scripts and the characters cleaners trip over.
SCRIPTS = st.sampled_from([
    "电影很好看。", "床前明月光，疑是地上霜。", "مرحبا بالعالم", "e\u0301", "\u0915\u094d\u0937",
    "👩\u200d👩\u200d👧", "🇫🇷", "ＡＢＣ１２３", "ﬁ", "\u00a0", "\u3000", "<br />", "<b>", "</i>",
    "&amp;", "&lt;p&gt;", "&#233;", "\x1b[32m", "\x1b[m", "\x1b]0;title\x07", "\r\n", "\t", "\x00",
    "\x7f", "\x9b1m", " ", "\n\n\n", "The", "a", "I", "İ", "ß", "Ω", "％", "＜ｂ＞", "…",
    "&foo;", "&T;", "&#0;", "&#x110000;", "<", ">", "&",
])
MIXED_TEXT = st.lists(st.one_of(SCRIPTS, st.text(max_size=8)), max_size=12).map("".join)
ANY_TEXT = st.one_of(st.text(), MIXED_TEXT,
                     st.binary().map(lambda b: b.decode("utf-8", errors="replace")),
                     st.binary().map(lambda b: b.decode("utf-8", errors="surrogateescape")))
CLEANERS = st.builds(Cleaner, escapes=st.booleans(), markup=st.booleans(), nfkc=st.booleans(),
                     control=st.booleans(), lowercase=st.booleans(), whitespace=st.booleans(),
                     stopwords=st.sampled_from([(), ("the", "a"), cleaning.ENGLISH_STOPWORDS]))


# --- Single steps -------------------------------------------------------------------------------


def test_imdb_markup_becomes_line_breaks_and_is_counted():
  text, counts = cleaning.clean("Great film.<br /><br />Loved <i>it</i> &amp; more.")
  assert text == "Great film.\n\nLoved it & more."
  assert counts["markup"] == 5  # Two <br />, <i>, </i>, &amp;.


def test_terminal_escapes_are_removed_and_counted():
  raw = "\x1b[33m    -- Debian \x1b[32m《行为准则》\x1b[m第一条\x1b[m"
  text, counts = cleaning.clean(raw)
  assert text == "-- Debian 《行为准则》第一条"
  assert counts["escapes"] == 4
  assert cleaning.count_escapes([text]) == 0 and cleaning.count_escapes([raw]) == 4


def test_escapes_off_leaves_only_the_escape_characters_to_the_control_step():
  text, counts = Cleaner(escapes=False).clean("\x1b[32mgreen")
  assert text == "[32mgreen" and counts["control"] == 1 and "escapes" not in counts


def test_nfkc_turns_full_width_forms_into_ascii_and_is_switchable():
  assert cleaning.clean("ＡＢＣ１２３！")[0] == "ABC123!"
  assert Cleaner(nfkc=False).clean("ＡＢＣ")[0] == "ＡＢＣ"
  assert cleaning.clean("ＡＢＣ")[1]["nfkc"] == 3


def test_control_characters_removed_but_tabs_and_newlines_kept():
  text, counts = Cleaner(whitespace=False).clean("a\x00b\x07c\td\ne\x7f")
  assert text == "abc\td\ne" and counts["control"] == 3


def test_whitespace_collapses_spaces_and_blank_lines():
  assert cleaning.clean("  a \t b  \r\n\r\n\r\n\nc  ")[0] == "a b\n\nc"


def _plain_whitespace_step(text):
  """The whitespace step as the module doc defines it, line by line."""
  lines, blank = [], False
  for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
    line = " ".join(line.split())
    if not line:
      blank = True
      continue
    if blank and lines:
      lines.append("")
    lines.append(line)
    blank = False
  return "\n".join(lines)


@PROPERTY
@given(st.lists(st.sampled_from(["a", "b", " ", "  ", "\n", "\n\n", "\n\n\n", "\r", "\r\n",
                                 "\t", "\u2028", "\x85", "\u3000", "\x1c", " \n", "\n "]),
                max_size=12).map("".join))
def test_whitespace_shortcut_for_clean_text_equals_the_plain_step(text):
  cleaned, changed = Cleaner()._whitespace(text)  # pylint: disable=protected-access
  assert cleaned == _plain_whitespace_step(text)
  assert changed == (cleaned != text)


@PROPERTY
@given(st.text(alphabet=st.characters(max_codepoint=0x7f), max_size=20))
def test_control_shortcut_for_ascii_text_equals_the_regex(text):
  assert Cleaner()._control(text) == cleaning._CONTROL_RE.subn("", text)  # pylint: disable=protected-access


def test_full_width_markup_exposed_by_nfkc_is_removed_in_the_same_call():
  assert cleaning.clean("x＜ｂ＞y")[0] == "xy"


def test_nested_references_are_decoded_to_a_fixed_point():
  assert cleaning.clean("&amp;lt;b&amp;gt;x")[0] == "x"


def test_unknown_references_are_kept_and_counted_as_nothing():
  assert cleaning.clean("AT&T; &foo; &amp;") == ("AT&T; &foo; &", {"markup": 1})


def test_text_that_only_looks_like_markup_is_kept():
  assert cleaning.clean("if a < b and c > d: 1 & 2")[0] == "if a < b and c > d: 1 & 2"


def test_stopwords_and_lowercase_are_off_by_default_and_work_when_on():
  assert cleaning.clean("The cat and the hat")[0] == "The cat and the hat"
  cleaner = Cleaner(stopwords=cleaning.parse_stopwords("english"), lowercase=True)
  text, counts = cleaner.clean("The cat and the hat, theme")
  assert text == "cat hat, theme" and counts["stopwords"] == 3


def test_parse_stopwords():
  assert cleaning.parse_stopwords("") == ()
  assert cleaning.parse_stopwords(" the, a ,") == ("the", "a")
  assert "the" in cleaning.parse_stopwords("english")


def test_chinese_text_is_kept_except_full_width_forms_under_nfkc():
  poem = "床前明月光，\n疑是地上霜。"
  assert Cleaner(nfkc=False).clean(poem) == (poem, {})
  assert cleaning.clean(poem) == ("床前明月光,\n疑是地上霜。", {"nfkc": 1})


# --- Properties ---------------------------------------------------------------------------------


@PROPERTY
@given(CLEANERS, ANY_TEXT)
def test_never_crashes_and_is_idempotent(cleaner, text):
  cleaned, counts = cleaner.clean(text)
  assert isinstance(cleaned, str)
  assert all(count > 0 for count in counts.values())
  assert set(counts) <= set(cleaner.enabled_steps)
  assert cleaner.clean(cleaned) == (cleaned, {})


@PROPERTY
@given(ANY_TEXT)
def test_all_steps_leave_no_escapes_controls_or_unnormalized_text(text):
  cleaned, _ = ALL_STEPS.clean(text)
  assert cleaning.count_escapes([cleaned]) == 0
  assert not any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t" for c in cleaned)
  assert unicodedata.is_normalized("NFKC", cleaned)
  assert cleaned == cleaned.strip() and "\n\n\n" not in cleaned and "  " not in cleaned
  cleaned.encode("utf-8")  # No lone surrogates are left.


@PROPERTY
@given(st.text(alphabet=st.characters(categories=("L", "M", "N", "P", "S", "Zs")), max_size=40))
def test_text_without_markup_escapes_or_controls_keeps_its_non_space_characters(text):
  """Letters, marks, digits, punctuation and symbols of every script survive in order."""
  cleaner = Cleaner(markup=False, nfkc=False)
  cleaned, _ = cleaner.clean(text)
  assert "".join(cleaned.split()) == "".join(text.split())


@PROPERTY
@given(st.text(alphabet=st.characters(categories=("Lo", "Mn", "So", "Nd")), max_size=40))
def test_cjk_arabic_and_emoji_without_spaces_are_unchanged_without_nfkc(text):
  assert Cleaner(nfkc=False).clean(text)[0] == text.strip()
