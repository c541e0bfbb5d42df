"""The runs of a sweep: the variants the experiment file's `sweep()` returns, times the seeds.

`sweep(ARG)` (or `sweep()` without `:ARG`, as get_config) returns a list of dicts of dotted
config overrides, e.g. [{"name": "rmsnorm", "model.norm": "rmsnorm"}, {}], the optional
"name" naming the variant's directory (else derived from the overrides; {} is "baseline") and
the optional "series" the line it belongs to in `lm.sweep --plot_against=KEY`'s plot (e.g.
"pretrained" for every variant of a learning curve that fine-tunes a pretrained model).
Every variant is checked before anything runs: its keys exist, its values have the keys'
types and the resulting config passes lm.config_checks.
"""

import copy
import dataclasses
import difflib
import fnmatch
import os
import re
import shlex
from typing import Any

import ml_collections

from lm import config_checks, config_file
from lm.errors import UserError

NAME_KEY = "name"
SERIES_KEY = "series"
_SAFE_NAME = re.compile(r"^[\w.,=+-]+$")
_VALUE_TYPES = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str
  overrides: dict[str, Any]  # Dotted config key -> value, in the order sweep() gave them.
  # The sweep command's own --config.KEY=VALUE overrides, the same for every variant.
  common: dict[str, Any] = dataclasses.field(default_factory=dict)
  series: str = ""  # Its line in the --plot_against plot ('' = the variant's name).

  def describe(self) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in self.overrides.items()) or "(the config as is)"


@dataclasses.dataclass(frozen=True)
class Run:
  """One lm.main process: a variant at a seed, in DIR/<variant>/seed<k> (with --folds, one
  fold of it, in DIR/<variant>/seed<k>/fold<i>)."""
  variant: Variant
  seed: int
  workdir: str
  config_arg: str  # --config=PATH[:ARGS], as given to lm.sweep.
  fold: int | None = None  # Cross-validation: config.data.fold of `folds`.
  folds: int = 0

  @property
  def name(self) -> str:
    return f"{self.variant.name}/seed{self.seed}" + (
        f"/fold{self.fold}" if self.fold is not None else "")

  @property
  def log_path(self) -> str:
    return os.path.join(self.workdir, "log.txt")

  def main_args(self) -> list[str]:
    """The arguments of `python` that train it: -m lm.main --config=... --config.KEY=VALUE."""
    folds = {} if self.fold is None else {"data.folds": self.folds, "data.fold": self.fold}
    overrides = [
        f"--config.{k}={flag_value(v)}"
        for k, v in {**self.variant.common, **self.variant.overrides, **folds}.items()
    ]
    return ["-m", "lm.main", f"--config={self.config_arg}", f"--workdir={self.workdir}",
            f"--config.seed={self.seed}", *overrides]

  def command(self, python: str = "python") -> str:
    return shlex.join([python, *self.main_args()])


def flag_value(value: Any) -> str:
  """How absl's --config.KEY=VALUE spells `value` (a bool as True/False, a float exactly)."""
  return repr(value) if isinstance(value, float) else str(value)


def load_variants(config_arg: str, common: dict[str, str] | None = None) -> list[Variant]:
  """The checked variants of the experiment file's sweep(), each with the command line's
  --config.KEY=VALUE overrides `common` (strings, typed here by their keys' defaults);
  UserError names the first problem."""
  path = config_arg.partition(":")[0]
  variants = config_file.call(config_arg, "sweep")
  if not isinstance(variants, (list, tuple)) or not all(isinstance(v, dict) for v in variants):
    raise UserError(f"--config={path}: sweep() must return a list of dicts of config overrides "
                    f"(e.g. [{{'model.norm': 'rmsnorm'}}]), got {type(variants).__name__}")
  if not variants:
    raise UserError(f"--config={path}: sweep() returned no variants")
  base = config_file.load(config_arg)
  common = typed_overrides(config_arg, common or {}, base)
  checked = []
  for i, v in enumerate(variants):
    clash = sorted(set(common) & set(v))
    if clash:
      raise UserError(f"--config.{clash[0]}: sweep() variant {i + 1} of {path} sets this key "
                      "itself; a command-line override applies to every variant, so leave it "
                      "out or change sweep()")
    variant = _check_variant(base, {**common, **v}, i, path)
    own = {k: val for k, val in variant.overrides.items() if k not in common}
    name = variant.name if NAME_KEY in v else derived_name(own)
    checked.append(Variant(name, own, common, variant.series))
  names = [v.name for v in checked]
  for name in names:
    if names.count(name) > 1:
      raise UserError(f"--config={path}: sweep() has {names.count(name)} variants named "
                      f"{name!r}; give them distinct {NAME_KEY!r} entries")
  return checked


def typed_overrides(config_arg: str, overrides: dict[str, str],
                    base: ml_collections.ConfigDict | None = None) -> dict[str, Any]:
  """The command line's --config.KEY=VALUE `overrides` typed by their keys' defaults in the
  experiment's config, each checked; UserError names the first bad one."""
  base = base if base is not None else config_file.load(config_arg)
  typed = {key: _typed(base, key, text) for key, text in overrides.items()}
  for key, value in typed.items():
    set_key(copy.deepcopy(base), key, value, f"--config.{key}")
  return typed


def _check_variant(base: ml_collections.ConfigDict, overrides: dict, index: int,
                   path: str) -> Variant:
  name = overrides.pop(NAME_KEY, None)
  series = overrides.pop(SERIES_KEY, "")
  where = f"--config={path}: sweep() variant {index + 1}" + (f" ({name!r})" if name else "")
  if not isinstance(series, str):
    raise UserError(f"{where}: {SERIES_KEY!r} must be a str (a line's label), got {series!r}")
  if name is not None and not (isinstance(name, str) and _SAFE_NAME.match(name)):
    raise UserError(f"{where}: {NAME_KEY!r} must be a directory name of letters, digits and "
                    f". , = + - _ ; got {name!r}")
  config = copy.deepcopy(base)
  config.lock()
  for key, value in overrides.items():
    if not isinstance(key, str):
      raise UserError(f"{where}: keys must be dotted config keys such as 'model.norm', got "
                      f"{key!r}")
    if key == "seed":
      raise UserError(f"{where}: seeds come from --seeds or --seed_list, not from sweep()")
    if not isinstance(value, _VALUE_TYPES):
      raise UserError(f"{where}: config.{key}={value!r}: a value must be a bool, int, float or "
                      f"str")
    set_key(config, key, value, where)
  try:
    config_checks.validate_config(config)
  except UserError as e:
    raise UserError(f"{where}: {e}") from None
  return Variant(name or derived_name(overrides), overrides, series=series)


def set_key(config: ml_collections.ConfigDict, key: str, value: Any, where: str) -> None:
  """config.KEY = value, with an unknown key or a value of the wrong type as a UserError."""
  *sections, leaf = key.split(".")
  node = config
  for depth, part in enumerate(sections + [leaf]):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      known = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      close = difflib.get_close_matches(part, known, n=1)
      hint = f"; did you mean {'.'.join(sections[:depth] + close)}?" if close else ""
      raise UserError(f"{where}: unknown config key {key!r}{hint}")
    if depth < len(sections):
      node = node[part]
  if isinstance(node[leaf], ml_collections.ConfigDict):
    raise UserError(f"{where}: config.{key} is a section; override its keys one by one")
  try:
    node[leaf] = value
  except TypeError:
    raise UserError(f"{where}: config.{key}={value!r}: must be a "
                    f"{type(node[leaf]).__name__} like its default {node[leaf]!r}") from None


def _typed(base: ml_collections.ConfigDict, key: str, text: str) -> Any:
  """The command-line value `text` of --config.KEY as the type of KEY's value in `base`."""
  node = base
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise UserError(f"--config.{key}: unknown config key (see lm/defaults.py)")
    node = node[part]
  try:
    if isinstance(node, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
      return text.lower() in ("true", "1")
    return type(node)(text) if isinstance(node, (int, float)) else text
  except ValueError:
    raise UserError(f"--config.{key}={text}: must be a {type(node).__name__} like its default "
                    f"{node!r}") from None


def derived_name(overrides: dict[str, Any]) -> str:
  """'norm=rmsnorm,mlp=swiglu' from the last part of each key; 'baseline' for none."""
  name = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in overrides.items()) or "baseline"
  return re.sub(r"[^\w.,=+-]", "_", name)


def select_variants(variants: list[Variant], patterns: str) -> list[Variant]:
  """The variants whose names match one of the comma-separated shell patterns (--variants, e.g.
  'scratch_n500,mlm_*'), in sweep() order; '' keeps all. A pattern matching none is an error."""
  wanted = [p.strip() for p in patterns.split(",") if p.strip()]
  if not wanted:
    return variants
  names = [v.name for v in variants]
  for pattern in wanted:
    if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
      raise UserError(f"--variants: {pattern!r} matches no variant; sweep() has "
                      f"{', '.join(names)}")
  return [v for v in variants if any(fnmatch.fnmatchcase(v.name, p) for p in wanted)]


def parse_seeds(count: int, seed_list: str) -> list[int]:
  """--seed_list '0,5,7' if given, else 0 .. count-1."""
  if seed_list.strip():
    try:
      seeds = [int(s) for s in seed_list.split(",") if s.strip()]
    except ValueError:
      raise UserError(f"--seed_list={seed_list}: must be comma-separated integers") from None
  else:
    if count < 1:
      raise UserError(f"--seeds={count}: must be >= 1")
    seeds = list(range(count))
  if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
    raise UserError(f"--seed_list={seed_list}: must be distinct integers >= 0")
  return seeds


def make_runs(variants: list[Variant], seeds: list[int], workdir: str, config_arg: str,
              folds: int = 0) -> list[Run]:
  """Seed-major: the first seed of every variant, then the next, so that every variant has a
  result early and the later seeds find their programs in the compilation cache. With
  `folds` = k >= 2, every variant x seed runs each of the k folds (config.data.folds/fold)."""
  if folds:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
      raise UserError(f"--folds={folds}: must be >= 2 (0: no cross-validation)")
    for v in variants:
      clash = sorted({"data.folds", "data.fold"} & set({**v.common, **v.overrides}))
      if clash:
        raise UserError(f"--folds={folds} and config.{clash[0]} in variant {v.name!r}: "
                        f"--folds sets the folds of every run; leave it out of sweep() and "
                        f"--config")
  return [
      Run(v, seed, os.path.join(workdir, v.name, f"seed{seed}", f"fold{fold}"), config_arg,
          fold, folds) if folds else Run(v, seed, os.path.join(workdir, v.name, f"seed{seed}"),
                                         config_arg)
      for seed in seeds
      for v in variants
      for fold in (range(folds) if folds else [None])
  ]
