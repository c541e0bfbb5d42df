"""The data stage: documents -> tokenizer -> cached token stream -> batches of windows.

  sources.py      read_documents / split_train_valid (local files, `tfds:NAME`)
  tokenizers.py   char, byte and SentencePiece tokenizers; build_tokenizer / load_tokenizer
  hf_tokenizer.py Hugging Face tokenizers imported with their own special ids (import_tokenizer)
  token_store.py  tokenize once, cache the flat uint16/uint32 stream on disk
  batches.py      WindowSampler (training) and eval_batches; the one input/target shift
  masking.py      BERT masked-LM corruption (token or whole-word)
  records.py      labeled records (CSV/TSV/JSONL, tar members, TFDS) and the label set
  examples.py     records -> token arrays for classification and SFT
  buckets.py      length-bucketed batches with dynamic padding
  augment.py      EDA-style augmentation of training texts
  prepare/        `python -m lm.data.prepare`: clean, filter, deduplicate and tokenize a corpus
                  into memory-mapped shards with a report (config.data.prepared reads them)
"""
