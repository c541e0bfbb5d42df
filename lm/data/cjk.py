"""The characters written without spaces between words (Chinese, Japanese, Korean), as regex
character-class ranges: what augmentation, QA context units and word segmentation treat as a
unit of its own."""

# CJK ideographs (with extension A and compatibility ideographs), kana and Hangul syllables.
IDEOGRAPHS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# CJK symbols and punctuation, and the full- and half-width forms.
PUNCTUATION = "\u3000-\u303f\uff00-\uffef"
