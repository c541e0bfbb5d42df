"""The data stage: documents -> tokenizer -> cached token stream -> batches of windows.

  reader.py       the one reader: records and documents from files, tar members and `tfds:NAME`
  text_files.py   files as the reader sees them: paths, gzip, UTF-8, lines, JSONL, CSV/TSV, tar
  splits.py       validation split off the training data (corpus tail or held-out records)
  labels.py       the label set of a classifier or tagger (labels.json)
  tagged.py       CoNLL / JSONL token-tagged files for NER, and predictions written back
  tokenizers.py   char, byte and SentencePiece tokenizers; build_tokenizer / load_tokenizer
  hf_tokenizer.py Hugging Face tokenizers imported with their own special ids (import_tokenizer)
  token_store.py  tokenize once, cache the flat uint16/uint32 stream on disk
  batches.py      WindowSampler (training) and eval_batches; the one input/target shift
  masking.py      BERT masked-LM corruption (token or whole-word)
  examples.py     records -> token arrays for classification and SFT
  buckets.py      length-bucketed batches with dynamic padding
  augment.py      EDA-style augmentation of training texts
  prepare/        `python -m lm.data.prepare`: clean, filter, deduplicate and tokenize a corpus
                  into memory-mapped shards with a report (config.data.prepared reads them)
"""
