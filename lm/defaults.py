"""The base experiment config: every key the trainer reads, each with its meaning.

Experiment files in `experiments/` start from `base_config()` and change a few fields.
"""

import ml_collections

from lm.data import data_root
from lm.models import config as model_config
from lm.tasks import registry



# The default logical -> mesh axis rules (config.mesh.rules).
MESH_RULES = (
    ("act_batch", "data,fsdp"),
    ("act_embed", ""),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", ""),
    ("position", ""),
    ("layers", ""),
)


def base_config(preset: str = "tiny") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Seed for parameter init, dropout and the data sampler.
  c.seed = 0
  # Fine-tuning: a pretraining workdir whose parameters initialize this run (its tokenizer is
  # reused too). The task head (and LoRA adapters) start fresh; a language-model head that the
  # task does not use is dropped. '' trains from random initialization.
  c.init_from = ""
  # True: refuse to start without init_from (set by experiment arguments meant for fine-tuning,
  # so that a forgotten --config.init_from never trains from scratch unnoticed).
  c.init_required = False
  # Which checkpoint of init_from: 'latest', 'best' (by its config.train.best_metric) or a step.
  c.init_step = "latest"
  # The architecture of an init_from run: 'check' (config.model must match it: a mismatch is an
  # error) or 'adopt' (config.model's architecture keys are taken from init_from's saved config,
  # e.g. a checkpoint imported with `python -m lm.convert --from_hf`; dropout, attention, remat,
  # scan_layers and the dtypes stay this config's).
  c.init_architecture = "check"

  # What the model learns (lm/tasks/):
  #   causal_lm       next-token prediction on text windows (decoder, config.model.causal=True)
  #   masked_lm       BERT's masked-token prediction on text windows (encoder, causal=False)
  #   classification  a label per text, from a CSV/TSV/JSONL/TFDS/tar source (config.data.*)
  #   sft             causal LM on prompt/response pairs, loss on the response only
  #   chat            causal LM on conversations through a chat template, loss on the
  #                   assistant's turns only (lm/tasks/chat.py)
  c.task = ml_collections.ConfigDict()
  c.task.kind = "causal_lm"
  # Classifier input: 'cls' (first token; encoders put [CLS] there), 'mean' (of non-padding
  # tokens) or 'last' (last non-padding token: decoders, where it has read the whole text).
  c.task.pooling = "cls"
  # Cross-entropy of classifiers: label smoothing in [0, 1), and per-class loss weights
  # (comma-separated, one per label in config.data.labels order; '' = all 1).
  c.task.label_smoothing = 0.0
  c.task.class_weights = ""

  # Masked-LM corruption (BERT, Devlin et al. 2019): share of tokens predicted, and of those the
  # shares replaced by [MASK] and by a random token (the rest stay unchanged). whole_word masks
  # all pieces of a word together (the sentencepiece tokenizer's words, or with
  # data.word_segmenter='jieba' jieba's Chinese words, for char or sentencepiece tokens).
  c.mlm = ml_collections.ConfigDict()
  c.mlm.mask_rate = 0.15
  c.mlm.mask_token_fraction = 0.8
  c.mlm.random_token_fraction = 0.1
  c.mlm.whole_word = False

  # What trains (classification and sft): 'full' (every parameter, less the frozen ones below),
  # 'linear_probe' (the classifier head only) or 'lora' (LoRA adapters and the head).
  c.finetune = ml_collections.ConfigDict()
  c.finetune.method = "full"
  # With 'full': keep the embeddings and the bottom freeze_layers blocks fixed.
  c.finetune.freeze_embeddings = False
  c.finetune.freeze_layers = 0
  # Layer-wise learning-rate decay (ELECTRA): block i learns at decay^(L - i) of the rate, the
  # embeddings at decay^(L + 1), the head at 1. 1.0 = off.
  c.finetune.layer_lr_decay = 1.0
  # Where the vocabulary grew from config.init_from's (a chat template's role tokens): the new
  # ids' rows of the embedding and output layers train even where the method freezes those
  # layers ('lora', 'linear_probe', freeze_embeddings), as PEFT's trainable_token_indices.
  c.finetune.train_new_tokens = True
  # LoRA (Hu et al. 2021): rank, scale alpha / rank, dropout on the adapter input, and the
  # projections that get adapters (query, key_value, out, wi, wi_gate, wi_up, wo).
  c.finetune.lora_rank = 8
  c.finetune.lora_alpha = 16.0
  c.finetune.lora_dropout = 0.0
  c.finetune.lora_targets = "query,key_value,out"

  # Knowledge distillation (lm/tasks/distillation.py) into a classifier, tagger or seq2seq: the
  # workdir of a trained run of the same kind and labels ('' = off), its checkpoint ('best',
  # 'latest' or a step), the weight alpha of the labels' cross-entropy against (1 - alpha) of
  # the soft loss: 'kl' (T^2 * KL to the teacher at temperature T) or 'mse' (on the logits, Tang
  # et al. 2019); seq2seq: of the teacher's decoded outputs as targets. Teacher outputs are
  # cached in the workdir, or in cache_dir (one file per teacher checkpoint and transfer set),
  # which students of the same teacher share (a sweep's seeds and variants).
  c.distill = ml_collections.ConfigDict()
  c.distill.teacher = ""
  c.distill.teacher_checkpoint = "best"
  c.distill.alpha = 0.5
  c.distill.temperature = 2.0
  c.distill.loss = "kl"
  c.distill.cache_dir = ""
  # Classifiers: unlabelled texts the teacher labels, beside the training data
  # (lm/tasks/transfer_set.py): a source as config.data.source, its texts in config.data
  # .text_field, split into sentences with transfer_unit='sentence' ('text': whole texts), the
  # first transfer_examples of a fixed shuffle (0 = all).
  c.distill.transfer = ""
  c.distill.transfer_unit = "text"
  c.distill.transfer_examples = 0
  # 'teacher': the student reads with the teacher's tokenizer and its token embeddings start from
  # the teacher's table projected to its width by PCA (lm/training/student_embeddings.py);
  # '' = its own tokenizer, trained on its data, and random embeddings.
  c.distill.embeddings = ""
  # Classifiers: weight of hidden-state transfer ('' = 0 = off): beside the loss above, the mean
  # squared difference between the student's pooled vector (the one its classifier reads,
  # before any pooler) and the teacher's, through a learned linear map to the teacher's width
  # when the two widths differ. The teacher's pooled vectors are cached with its logits.
  c.distill.hidden_weight = 0.0

  # The classic baseline, config.model.architecture='tfidf' (classification; lm/models/tfidf.py):
  # TF-IDF of 1..ngram_max-grams of `analyzer` units ('word'; 'char' or 'char_wb' for Chinese)
  # seen in >= min_df training texts (the max_features most frequent; 0 = all), sublinear tf,
  # then an L2 logistic regression (inverse strength C, lbfgs for max_iter iterations).
  c.tfidf = ml_collections.ConfigDict()
  c.tfidf.analyzer = "word"
  c.tfidf.ngram_max = 2
  c.tfidf.min_df = 2
  c.tfidf.max_features = 0
  c.tfidf.sublinear_tf = True
  c.tfidf.C = 1.0
  c.tfidf.max_iter = 2000

  # Augmentation of classification training texts (lm/data/augment.py): `copies` extra copies
  # of every example, each by one of `operations` (comma-separated): EDA's swap, delete, insert
  # (Wei & Zou 2019, without synonyms) and Tang et al.'s mask, replace, ngram, on about rate x
  # the units (words; Chinese characters), reproducible from `seed` (-1 = config.seed; fix it
  # to keep the same copies, and a distillation teacher's cached outputs of them, across
  # training seeds). rate 0 = off.
  c.augment = ml_collections.ConfigDict()
  c.augment.rate = 0.0
  c.augment.copies = 1
  c.augment.seed = -1
  c.augment.operations = "swap,delete,insert"

  c.data = ml_collections.ConfigDict()
  # Training text: local files (comma-separated paths or globs; .txt, .jsonl, .csv, .tsv,
  # optionally .gz) or a TensorFlow Datasets name as 'tfds:NAME' (e.g. 'tfds:lm1b').
  c.data.source = data_root.vendored("tinyshakespeare", "input.txt")
  # Validation text in the same forms; '' splits the last valid_fraction off the training text.
  c.data.valid_source = ""
  # Test text in the same forms (language models only): the final evaluation also reports
  # test/loss, test/perplexity and test/bpb on it; '' has no test split. Never read before the
  # last step, so nothing (best checkpoint, early stopping) is chosen on it.
  c.data.test_source = ""
  # Share of the training text held out for validation when valid_source is ''.
  c.data.valid_fraction = 0.1
  # What valid_fraction holds out of a supervised task's training records: 'records' (a random
  # share of them), or 'whole_texts' for a phrase treebank such as SST-2, whose training split
  # lists every sentence and each of its sub-phrases: that share of the texts inside no other
  # text, and no record inside a held-out one is trained on (validation like dev's sentences).
  c.data.valid_holdout = "records"
  # Supervised tasks: train on this many examples of the training split (0 = all), the first
  # of a fixed shuffle (the same for every seed and variant; a smaller N's are among a larger
  # N's): low-resource learning curves. Validation is unchanged.
  c.data.train_examples = 0
  # k-fold cross-validation of supervised tasks: with folds = k >= 2, validation is fold `fold`
  # (0..k-1) of the training records and training the other k-1 (stratified by label, the same
  # split in every run; valid_source is not read). `lm.sweep --folds=k` runs every fold.
  c.data.folds = 0
  c.data.fold = 0
  # TFDS splits read for training and validation (ignored for local files).
  c.data.train_split = "train"
  c.data.valid_split = "validation"
  # Where TFDS datasets are prepared ('' = TFDS's default, ~/tensorflow_datasets).
  c.data.tfds_data_dir = ""
  # JSONL key / CSV or TSV column / TFDS feature that holds the text.
  c.data.text_field = "text"
  # Classification of sentence pairs (entailment, paraphrase, ...): the column/key/feature of
  # the second text ('' = one text per example). Encoders read [CLS] a [SEP] b [SEP] with token
  # types 0 for [CLS] a [SEP] and 1 for b [SEP] (BERT; models with config.model.type_vocab_size),
  # decoders a [SEP] b [EOS]; too long, the longer text loses its last tokens first.
  c.data.text_pair_field = ""
  # Classification: the column/key/feature of the label ('@dir' for files and tar members:
  # the name of their directory; '@file': the file's own name without its extension, e.g.
  # one label per collection with txt_unit='entry'), and the labels in order, comma-separated
  # ('' = the sorted labels of the training data). Plain-text files give one record per
  # txt_unit, per line for the default 'file'.
  c.data.label_field = "label"
  c.data.labels = ""
  # SFT: the columns/keys of the prompt and of the response.
  c.data.prompt_field = "prompt"
  c.data.response_field = "response"
  # Lower-case all text as it is read (training, evaluation and lm.predict).
  c.data.lowercase = False
  # Classification and SFT: cleaning steps of lm/data/prepare/cleaning.py applied to every
  # record's texts as read, comma-separated (escapes, markup, nfkc, control, lowercase,
  # whitespace; '' = none), e.g. 'escapes,control' for text with terminal color codes.
  # Language-model text is cleaned by `python -m lm.data.prepare` (config.data.prepared).
  c.data.clean = ""
  # What one document is in a plain-text file: 'file', 'line', 'paragraph' (blank-line
  # separated) or 'entry' (fortune(6) style: entries between lines holding entry_separator).
  c.data.txt_unit = "file"
  c.data.entry_separator = "%"
  # A corpus prepared by `python -m lm.data.prepare` (its --workdir): training memory-maps its
  # token shards and uses the tokenizer saved there, with no re-tokenization; source, the
  # reading options and the tokenizer keys above are then ignored. '' reads config.data.source.
  c.data.prepared = ""
  # Undecodable UTF-8 bytes (and unpaired surrogate escapes such as "\ud800" in JSONL strings):
  # 'strict' (an error naming file and line) or 'replace' (U+FFFD).
  c.data.encoding_errors = "strict"
  # Tokenizer: 'char' (code points seen in training), 'byte' (UTF-8 bytes), 'word' (words
  # between spaces plus an <eos> per line end: the unit of word-level perplexity, for
  # pre-tokenized benchmarks like WikiText-2; lm/data/word_tokenizer.py) or 'sentencepiece'.
  c.data.tokenizer = "char"
  # Vocabulary size, special tokens included: SentencePiece's, or the word tokenizer's cap (the
  # most frequent words; the others become <unk>). SentencePiece model type: 'bpe' or 'unigram'.
  c.data.vocab_size = 8000
  # The word tokenizer's words (and the TF-IDF baseline's with config.tfidf.analyzer='word'):
  # '' splits at whitespace, 'jieba' segments Chinese with jieba (lm/data/segmenter.py).
  c.data.word_segmenter = ""
  c.data.model_type = "bpe"
  # SentencePiece character coverage (1.0 for small alphabets, ~0.9995 for CJK).
  c.data.character_coverage = 1.0
  # Characters outside the vocabulary become their UTF-8 bytes (256 byte ids) instead of <unk>,
  # so any text round-trips: sentencepiece (rare characters below character_coverage) and char
  # (code points unseen in training; the byte ids follow the characters).
  c.data.byte_fallback = True
  # Tokens per training window; 0 means the model's context, config.model.max_len.
  c.data.seq_len = 0
  # Training windows: 'random' offsets (nanoGPT) or 'strided' (consecutive, non-overlapping).
  c.data.sampling = "random"

  # The model: a Transformer, or an LSTM language model (architecture='lstm'); see
  # lm/models/config.py for each field.
  c.model = ml_collections.ConfigDict(model_config.preset_fields(preset))

  c.train = ml_collections.ConfigDict()
  # Optimizer steps to train for.
  c.train.steps = 2000
  # Sequences per optimizer step (global, over all devices and accumulation micro-steps).
  c.train.batch_size = 12
  # Micro-batches whose gradients are averaged into one optimizer step.
  c.train.grad_accum_steps = 1
  # Optimizer steps per call of the jitted program (a lax.scan over that many batches): saves
  # the host's dispatch of each step, which matters for small models on CPU. Calls end at log,
  # evaluation and checkpoint steps. Fixed-shape batches only (causal_lm, masked_lm).
  c.train.steps_per_call = 1
  # Peak learning rate, reached after warmup_steps of linear warmup from 0.
  c.train.learning_rate = 1e-3
  c.train.warmup_steps = 100
  # After warmup: 'cosine' or 'linear' decay to min_learning_rate at the last step, or 'constant'.
  c.train.schedule = "cosine"
  c.train.min_learning_rate = 1e-4
  # The optimizer, from optax: 'adamw', 'adam' (weight decay as an L2 gradient term, as
  # PyTorch's Adam), 'sgd' (momentum, nesterov; L2 as PyTorch's SGD), 'adafactor' or 'lion'
  # (b1, b2; a 3-10x smaller learning rate than AdamW's).
  c.train.optimizer = "adamw"
  # Adam/AdamW/Lion moments and epsilon.
  c.train.b1 = 0.9
  c.train.b2 = 0.99
  c.train.eps = 1e-8
  # SGD's momentum (0 = plain SGD) and Nesterov momentum.
  c.train.momentum = 0.9
  c.train.nesterov = False
  # Weight decay (decoupled for adamw, adafactor and lion), applied to matrices only: never to
  # norms and biases, and to the embedding tables only if decay_embeddings.
  c.train.weight_decay = 0.1
  c.train.decay_embeddings = False
  # Clip gradients to this global norm (0 disables clipping).
  c.train.grad_clip = 1.0
  # Evaluate every N steps on the first eval_batches batches of the validation split, and at
  # the last step on final_eval_batches (0 = the whole split, so the final numbers are exact).
  c.train.eval_every = 250
  c.train.eval_batches = 0
  c.train.final_eval_batches = 0
  # Sequences per evaluation batch (forward only, so larger than batch_size is cheap).
  c.train.eval_batch_size = 64
  # Save a checkpoint every N steps (and at the end), keeping the newest keep_checkpoints.
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  # Log training metrics every N steps.
  c.train.log_every = 50
  # The validation metric that picks the best checkpoint (kept beside the newest ones, used by
  # init_step='best' and lm.predict) and drives early stopping: '' = eval/loss for language
  # models, eval/accuracy for classifiers. Metrics with 'loss', 'perplexity' or 'bpb' in
  # their name are minimized, others maximized.
  c.train.best_metric = ""
  # Stop after this many evaluations without a new best (0 = never stop early).
  c.train.early_stopping_patience = 0
  # A step whose loss or gradients are NaN or infinite (lm/training/nonfinite.py): 'stop'
  # (an error naming the step and the parameter groups; the last good checkpoint stays the
  # latest), 'skip' (the update is dropped, the step counted in train/skipped_steps) or
  # 'rollback' (back to the last good checkpoint, or the initial state before the first one,
  # with the learning rate multiplied by rollback_lr_factor; after max_rollbacks, 'stop').
  c.train.on_nonfinite = "stop"
  c.train.rollback_lr_factor = 0.5
  c.train.max_rollbacks = 3
  # Testing hook (fault injection): makes the gradients of this step NaN, the first time the
  # run reaches it. -1 = off (not even compiled in).
  c.train.debug_nonfinite_step = -1
  # Peak FLOP/s of one device for MFU; 0 looks it up (GPU/TPU data sheets) or, on CPU, uses
  # the measured per-core matmul peak times all cores (lm/training/flops.py).
  c.train.peak_flops = 0.0
  # Text generated from this prompt when training ends ('' skips the sample).
  c.train.sample_prompt = "\n"
  c.train.sample_tokens = 200

  # The device mesh (lm/training/partitioning.py, docs/multi_host.md). Sizes of its axes:
  # data (replicas), fsdp (parameters and optimizer state sharded, ZeRO-3) and tensor (heads
  # and MLP units split, Megatron). One may be -1: all remaining devices (for data: as many as
  # the batch divides evenly over). data x fsdp must divide the (micro-)batch.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  # Data parallel under jax.pmap instead of jax.jit over the mesh (one host; data axis only).
  c.mesh.use_pmap = False
  # Logical axis name -> comma-separated mesh axes ('' = replicated). Parameters: embed, vocab,
  # heads, kv_heads, head_dim, mlp, position, layers (scanned stacks); activations: act_batch,
  # act_embed, act_heads, act_mlp, act_vocab. A dimension the mesh axes do not divide evenly
  # stays replicated.
  c.mesh.rules = ml_collections.ConfigDict(dict(MESH_RULES))

  # Multi-process runs (one process per host, or per GPU): every process runs the same command.
  c.distributed = ml_collections.ConfigDict()
  # Call jax.distributed.initialize() at start-up (on TPU pods, SLURM, Open MPI and Kubernetes
  # JAX finds the values below itself). Also happens when JAX_COORDINATOR_ADDRESS is set.
  c.distributed.initialize = False
  # 'host:port' of process 0 ('' = auto-detect), number of processes (0 = auto-detect) and this
  # process's index (-1 = auto-detect).
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = 0
  c.distributed.process_id = -1

  # Keys of one task only, defined (with their comments) in the task's module.
  registry.add_config_keys(c)
  return c


# Keys that may differ from a workdir's saved config when a run resumes: they change
# bookkeeping or how the same computation is laid out, not its result. A trailing '.' covers
# a whole section.
RESUMABLE_CHANGES = ("train.eval_every", "train.checkpoint_every", "train.keep_checkpoints",
                     "train.log_every", "train.sample_prompt", "train.sample_tokens",
                     "train.peak_flops", "train.on_nonfinite", "train.rollback_lr_factor",
                     "train.max_rollbacks", "train.debug_nonfinite_step", "model.attention",
                     "model.remat", "mesh.", "distributed.")


def resumable_change(key: str) -> bool:
  return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_CHANGES)
