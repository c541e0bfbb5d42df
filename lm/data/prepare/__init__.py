"""Corpus preparation (`python -m lm.data.prepare`): read, clean, filter, deduplicate,
tokenize into memory-mapped shards, report. See docs/data_prepare.md."""
