# The two commands of the README: `make demo` and `make test`. Both create .venv/ on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR := runs/demo

.PHONY: demo test bench clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3

# Stamp files: reinstall only when the pinned requirements change.
$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test: requirements-test.txt requirements-beam.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-beam.txt
	touch $@

# Train nanoGPT's CPU recipe on Tiny Shakespeare from scratch, evaluate it, and generate text.
demo: $(VENV)/.runtime
	rm -rf $(DEMO_DIR)
	$(BIN)/python -m lm.main --config=experiments/shakespeare_char.py:cpu --workdir=$(DEMO_DIR)
	$(BIN)/python -m lm.generate --workdir=$(DEMO_DIR) --prompt="ROMEO:" --prompt="JULIET:" \
	  --max_new_tokens=300 --temperature=0.8

test: $(VENV)/.test
	$(BIN)/python -m pytest

# Throughput of this trainer against a PyTorch eager loop of the same recipe (BENCHMARKS.md):
# in alternating chunks (drift-proof), then whole runs over three seeds.
.venv-torch/.installed: benchmarks/requirements-torch.txt
	$(PYTHON) -m venv .venv-torch
	.venv-torch/bin/pip install --quiet -r benchmarks/requirements-torch.txt
	touch $@

bench: $(VENV)/.runtime .venv-torch/.installed
	$(BIN)/python benchmarks/lockstep.py
	$(BIN)/python benchmarks/compare_torch.py --seeds=0,1,2
