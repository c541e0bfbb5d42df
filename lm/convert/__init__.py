"""Conversion between Hugging Face checkpoints and this project's workdirs (`python -m lm.convert`).

  checkpoint_files.py  config.json, safetensors (read/write) and PyTorch .bin files (no torch)
  torch_pickle.py      a whitelisting reader of torch.save's zip pickle format
  tensor_map.py        rules: a parameter <-> Hugging Face tensors, used in both directions
  family.py            what a family provides, and the lookup by model_type or model config
  gpt2.py, bert.py, llama.py, gpt_neox.py   the families (llama.py also reads Mistral and Qwen2)
  rope.py              rotary settings <-> Hugging Face rope_parameters (Llama, GPT-NeoX)
  importer.py          a Hugging Face directory -> a workdir (checkpoint, config, tokenizer)
  exporter.py          a workdir -> a new directory: config.json + model.safetensors + tokenizer
  tokenizer_files.py   the project's tokenizers as tokenizer.json (+ tokenizer_config.json)
  st_classifier.py     a pooled encoder classifier as a sentence-transformers directory
"""
