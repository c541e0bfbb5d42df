"""Zero- and few-shot classification by verbalizers: a pretrained language model, untrained
here, picks the label whose words it finds most likely after a prompt (Brown et al. 2020; the
verbalizers of Schick and Schütze 2021).

Evaluation only: config.train.steps=0 with config.init_from a decoder (`causal_lm`, `sft`, an
imported GPT-2 or Llama) or an encoder–decoder (`seq2seq`, an imported T5 or BART) run, scored
by one API (`lm.scoring`; config.init_architecture='adopt' takes the run's architecture).

Prompts. config.task.prompt_template holds {text} and then {answer}, e.g.
'Review: {text}\\nSentiment: {answer}'. A demonstration is the template filled with a training
text (stripped of surrounding whitespace) and the first word of its label; the prompt of a
validation example is config.task.shots demonstrations, each followed by
config.task.shot_separator, then the template filled with the example's text up to {answer},
less the spaces just before {answer}: those start every candidate word (' great'), as the word
stands in the demonstrations. Candidates are every word of every label
(config.task.verbalizers); a label scores the max (or mean, config.task.label_score) of its
words' log-likelihoods, each summed over the word's tokens. The prediction is the best label;
the metrics are a classifier's (lm/evaluation/classification_metrics.py) of the softmax over
the label scores, eval/loss its NLL of the true label.

Demonstrations are drawn uniformly without replacement from the training records (config.data
.source; not balanced by label, so a 4-shot prompt may show one label only), kept in the order
drawn, with np.random.default_rng([shot_seed, example index]): the same seed gives the same
prompts in every run, whatever else is evaluated. A training record with the example's own text
is never drawn. A prompt longer than the model's context drops its first demonstrations until it
fits (eval/mean_shots: the mean number kept); a zero-shot prompt still too long is cut as
`lm.scoring` cuts contexts, and counted. Predictions go to eval_predictions.jsonl (prompt,
scores, the demonstrations' file and line), the metrics and confusion matrix to
eval_report.json.
"""

import collections
import json
import os
from typing import Any, Sequence

import numpy as np

from lm import scoring
from lm.data import atomic, labels
from lm.errors import UserError
from lm.evaluation import classification_metrics as cm
from lm.models.config import model_config_from
from lm.tasks import base, supervised
from lm.training import checkpoints

REPORT_FILE = "eval_report.json"
CONFUSION_FILE = "confusion_matrix.png"
PREDICTIONS_FILE = "eval_predictions.jsonl"
LABEL_SCORES = ("max", "mean")


class FewShotTask(base.Task):
  """Labels of config.data.valid_source's texts (or the held-out part of config.data.source)
  by a language model's likelihood of their verbalizers after a k-shot prompt."""

  data_roles = ("text", "label")
  default_best_metric = "eval/accuracy"

  @classmethod
  def add_config_keys(cls, config) -> None:
    # Few-shot (config.task.kind='fewshot'): the words of each label, comma-separated
    # 'label:word' pairs, several words as 'label:word|word', e.g.
    # 'negative:terrible,positive:great'. The labels of the data must be among them.
    config.task.verbalizers = ""
    # Few-shot: demonstrations per prompt (0 = zero-shot).
    config.task.shots = 0
    # Few-shot: seed of the demonstrations' choice (-1 = config.seed, so that lm.sweep's seeds
    # draw different demonstrations).
    config.task.shot_seed = -1
    # Few-shot: a demonstration, with {text} and then {answer} (a word of the label); a prompt
    # ends with the classified text's, cut before {answer} and the spaces just before it.
    config.task.prompt_template = "Review: {text}\nSentiment: {answer}"
    # Few-shot: what follows every demonstration in a prompt.
    config.task.shot_separator = "\n\n"
    # Few-shot: a label's score from its words' log-likelihoods, 'max' or 'mean'.
    config.task.label_score = "max"

  @classmethod
  def check_config(cls, values: dict) -> None:
    # No architecture check: the init_from run's model is scored if it gives next-token
    # probabilities (lm.scoring.Scorer says so otherwise).
    task = values["task"]
    if values["train"]["steps"] != 0:
      raise UserError("config.task.kind='fewshot' evaluates config.init_from's model as it is: "
                      "set config.train.steps=0 (and config.train.warmup_steps=0)")
    parse_verbalizers(task["verbalizers"])
    split_template(task["prompt_template"])
    if task["shots"] < 0:
      raise UserError(f"config.task.shots={task['shots']}: must be >= 0 (0 = zero-shot)")
    if task["shot_seed"] < -1:
      raise UserError(f"config.task.shot_seed={task['shot_seed']}: must be >= 0, or -1 for "
                      f"config.seed")
    if task["label_score"] not in LABEL_SCORES:
      raise UserError(f"config.task.label_score={task['label_score']!r}: choose one of "
                      f"{', '.join(LABEL_SCORES)}")

  def __init__(self, config: Any, workdir: str, model_fields: dict[str, Any]):
    self.config = config
    task_cfg = config.task
    self.verbalizers = parse_verbalizers(task_cfg.verbalizers)
    self.labels = labels.LabelSet(list(self.verbalizers), "config.task.verbalizers")
    train, valid = supervised.read_splits(config, {
        "text": config.data.text_field,
        "label": config.data.label_field
    })
    label_ids = lambda records: np.array(
        [self.labels.index(r.values["label"], r.where) for r in records], np.int64)
    pool_labels, self.valid_labels = label_ids(train), label_ids(valid)
    self.tokenizer = base.prepare_tokenizer(config, workdir,
                                            lambda: [r.values["text"] for r in train])
    run_config = checkpoints.load_config(config.init_from)
    if run_config is None:
      raise UserError(f"config.init_from={config.init_from}: no config.json; point it at the "
                      f"workdir of a trained (or imported) language model")
    fields = {"vocab_size": self.tokenizer.vocab_size,
              **checkpoints.task_fields(run_config, config.init_from), **model_fields}
    self.model_config = model_config_from(config.model, **fields)
    self.seq_len = self.model_config.max_len
    self.scorer = scoring.Scorer(run_config, self.model_config, self.tokenizer)

    head, space, tail = split_template(task_cfg.prompt_template)
    # Candidate j is word words[j] of label owners[j].
    owners, words = zip(*[(i, w) for i, name in enumerate(self.labels.names)
                          for w in self.verbalizers[name]])
    self.owners = np.array(owners)
    self.candidates = [space + word for word in words]
    pool_texts = [r.values["text"].strip() for r in train]
    demonstrations = [
        head.replace("{text}", text) + space + self.verbalizers[self.labels.names[label]][0] +
        tail + task_cfg.shot_separator for text, label in zip(pool_texts, pool_labels)
    ]
    seed = config.seed if task_cfg.shot_seed == -1 else task_cfg.shot_seed
    sampler = DemonstrationSampler(pool_texts, seed)
    self.examples, self.num_truncated = [], 0
    for index, record in enumerate(valid):
      text = record.values["text"].strip()
      shots = sampler.choose(text, index, task_cfg.shots)
      while True:
        prompt = "".join(demonstrations[i] for i in shots) + head.replace("{text}", text)
        fits = self.scorer.fits(prompt, self.candidates)
        if fits or not shots:
          break
        shots = shots[1:]  # The first demonstration goes; the nearest ones stay.
      self.num_truncated += not fits
      self.examples.append({"where": record.where, "prompt": prompt,
                            "demonstrations": [train[i].where for i in shots]})
    self.num_pool = len(train)
    self._last_eval: tuple[np.ndarray, np.ndarray] | None = None

  def loss_fn(self, logits, batch):
    raise NotImplementedError("config.task.kind='fewshot' only evaluates")

  def train_batches(self, rows: np.ndarray) -> base.Batches:
    del rows
    return _NoBatches()

  def evaluate(self, layout, params, max_batches: int) -> dict[str, float]:
    """Metrics of the first max_batches * eval_batch_size validation examples (0 = all)."""
    batch_size = self.config.train.eval_batch_size
    count = min(len(self.examples), max_batches * batch_size or len(self.examples))
    examples = self.examples[:count]
    scores = self.scorer.score(layout.host_params(params),
                               [(e["prompt"], self.candidates) for e in examples],
                               batch_size=batch_size, names=[e["where"] for e in examples])
    scores_NxC = np.array([self._label_scores([s.logprob_sum for s in row]) for row in scores])
    log_probs_NxC = scores_NxC - scores_NxC.max(axis=1, keepdims=True)
    log_probs_NxC -= np.log(np.exp(log_probs_NxC).sum(axis=1, keepdims=True))
    labels_N = self.valid_labels[:count]
    metrics = cm.classification_metrics(labels_N, np.exp(log_probs_NxC), self.labels.names)
    metrics["eval/loss"] = float(-np.mean(log_probs_NxC[np.arange(count), labels_N]))
    metrics["eval/mean_shots"] = float(np.mean([len(e["demonstrations"]) for e in examples]))
    self._last_eval = (labels_N, scores_NxC)
    return metrics

  def _label_scores(self, candidate_scores: Sequence[float]) -> list[float]:
    """Each label's score: the max or mean of its words' scores."""
    reduce = np.max if self.config.task.label_score == "max" else np.mean
    values = np.asarray(candidate_scores)
    return [float(reduce(values[self.owners == i])) for i in range(len(self.labels.names))]

  def save_report(self, workdir: str, step: int, metrics: dict[str, float]) -> None:
    labels_N, scores_NxC = self._last_eval
    names = self.labels.names
    confusion = cm.confusion_matrix(labels_N, scores_NxC.argmax(-1), len(names))
    cm.write_eval_report(os.path.join(workdir, REPORT_FILE), metrics, confusion, names,
                         extra={"step": step, "shots": self.config.task.shots})
    cm.write_confusion_png(os.path.join(workdir, CONFUSION_FILE), confusion, names,
                           title=f"validation, {self.config.task.shots}-shot")
    lines = []
    for example, label, label_scores in zip(self.examples, labels_N, scores_NxC):
      lines.append(json.dumps({
          **example,
          "label": names[label],
          "prediction": names[int(label_scores.argmax())],
          "scores": dict(zip(names, label_scores.tolist())),
      }, ensure_ascii=False) + "\n")
    atomic.atomic_write_text(os.path.join(workdir, PREDICTIONS_FILE), "".join(lines))

  def describe(self) -> str:
    shots = self.config.task.shots
    fewer = sum(len(e["demonstrations"]) < shots for e in self.examples)
    return (f"Data: {len(self.examples):,} examples to classify, {shots}-shot prompts drawn from "
            f"{self.num_pool:,} training examples; {fewer:,} prompts keep fewer demonstrations "
            f"to fit the context of {self.seq_len} tokens, {self.num_truncated:,} are cut; "
            f"labels by {self.config.task.verbalizers!r}")


class DemonstrationSampler:
  """Seeded choice of demonstrations from a pool of training texts, never one with the text of
  the example being classified."""

  def __init__(self, texts: Sequence[str], seed: int):
    self._size, self._seed = len(texts), seed
    self._same_text = collections.defaultdict(list)
    for i, text in enumerate(texts):
      self._same_text[text].append(i)

  def choose(self, text: str, index: int, shots: int) -> list[int]:
    """Pool indices of `shots` demonstrations (fewer if the pool has fewer other texts) for
    example `index`, whose text is `text`: np.random.default_rng([seed, index]) draws `shots`
    plus as many as there are pool records with that text, which are then left out."""
    excluded = set(self._same_text.get(text, ()))
    size = min(shots + len(excluded), self._size)
    drawn = np.random.default_rng([self._seed, index]).choice(self._size, size, replace=False)
    return [int(i) for i in drawn if int(i) not in excluded][:shots]


class _NoBatches:
  """The training batches of a task that only evaluates (config.train.steps=0)."""

  def next_batch(self) -> dict[str, np.ndarray]:
    raise NotImplementedError("config.task.kind='fewshot' only evaluates")

  def get_state(self) -> dict:
    return {}

  def set_state(self, state: dict) -> None:
    del state


def parse_verbalizers(text: str) -> dict[str, list[str]]:
  """'negative:terrible|awful,positive:great' -> {'negative': ['terrible', 'awful'],
  'positive': ['great']} (config.task.verbalizers); UserError if malformed."""
  verbalizers: dict[str, list[str]] = {}
  for pair in text.split(","):
    label, _, words = pair.partition(":")
    words = [w.strip() for w in words.split("|")]
    if not label.strip() or not all(words) or label.strip() in verbalizers:
      raise UserError(f"config.task.verbalizers={text!r}: expected comma-separated "
                      f"'label:word' (or 'label:word|word') with distinct labels, e.g. "
                      f"'negative:terrible,positive:great'")
    verbalizers[label.strip()] = words
  if len(verbalizers) < 2:
    raise UserError(f"config.task.verbalizers={text!r}: give the words of at least 2 labels")
  return verbalizers


def split_template(template: str) -> tuple[str, str, str]:
  """config.task.prompt_template as (head, space, tail): the template is head + space +
  '{answer}' + tail, `space` the spaces just before {answer}, {text} once in head."""
  if template.count("{answer}") != 1 or template.count("{text}") != 1 or (
      template.index("{text}") > template.index("{answer}")):
    raise UserError(f"config.task.prompt_template={template!r}: needs {{text}} once and then "
                    f"{{answer}} once, e.g. 'Review: {{text}}\\nSentiment: {{answer}}'")
  before, tail = template.split("{answer}")
  head = before.rstrip(" ")
  return head, before[len(head):], tail
