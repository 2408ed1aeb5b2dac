r"""Text for the 1-D CNN classifier: tokenizer, vocabulary, corpora, pretrained embeddings.

Pieces (all host-side numpy, no TensorFlow):

* :func:`tokenize`: lowercase, tokens are runs of letters and digits (any
  script); an apostrophe *inside* a word stays part of it (``don't``,
  ``it's``, ``o'clock``), quotes around a word do not (``'great'`` -> ``great``),
  the typographic apostrophe counts as one, and IMDB's ``<br />`` is a space.
* :class:`Vocabulary`: built from the train split only: ``<pad>`` = 0,
  ``<unk>`` = 1, then words by count (ties alphabetical), at least
  ``min_count`` occurrences, ``max_vocab`` entries in all (specials included;
  0: no cap). Out-of-vocabulary words encode as ``<unk>``; a document longer
  than ``max_len`` keeps its first ``max_len`` tokens, and each split's
  truncated documents are counted and reported once (a warning).
* Corpora, each giving a :class:`TextSplit` of tokenised documents:

  - :func:`synthetic_sentiment`: the embedded default, generated in code
    (see below);
  - :func:`read_text_folder`: ``<root>/<split>/<class>/*.txt`` (the aclImdb
    layout: ``pos/``, ``neg/``; its unlabelled ``unsup/`` is ignored), labels
    in sorted folder order (``neg`` = 0, ``pos`` = 1, as tfds'
    ``imdb_reviews``);
  - :func:`read_tfds_text`: a prepared tfds text set (``imdb_reviews``)
    through ``tfds.data_source``, never downloading.

  Bad input: a file that is not UTF-8, and an empty review (no word at all,
  e.g. an empty file), are errors naming the file (the tfds record); with
  ``data.skip_corrupt=True`` they are skipped instead and counted in one
  warning per split.
* :func:`load_embeddings`: GloVe / word2vec *text* files (``word v1 v2 ...``
  per line; word2vec's ``count dim`` header line is skipped) -> the rows of
  the vocabulary's words; words missing from the file keep the model's random
  init. A dimension that is not the model's ``embed_dim`` is a one-line error
  naming both.

The synthetic sentiment corpus
------------------------------

Reviews are built from phrases whose polarity is a sentiment word's
(``good``, ``boring``, ``liked``, ``hated``, ...) flipped by a **negator**
among the two tokens right before it (``not``, ``never``, ``hardly``,
``wasn't``, ``didn't``, ...)::

  the acting was not very good          -> negative  (not ... good)
  i didn't really like it               -> negative
  the ending wasn't boring              -> positive
  the plot is truly dull                -> negative  (intensifiers change nothing)

Every phrase of a review carries the review's label; one to two phrases sit
among neutral filler sentences, some of which hold negators of their own far
from any sentiment word (``i had never read the book``). Half the phrases
are negated, so a sentiment word or a ``not`` alone says nothing about the
label: a bag of words (or a width-1 convolution) cannot solve the negated
reviews, while a filter of width 3 sees ``not very good`` whole.
:func:`rule_label` is the rule itself (tests check every generated review
against it); the split gives an extra ``negated`` (N,) bool: the review has a
flipped sentiment word.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAD, UNK = '<pad>', '<unk>'
PAD_ID, UNK_ID = 0, 1
_SHOW = 5  # files named in a skip warning

# ---------------------------------------------------------------------------- tokenizer

_BREAK = re.compile(r'<br\s*/?>', re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
  """Lowercase word tokens: runs of letters/digits, apostrophes kept inside words.

  >>> tokenize("It's NOT 'great' -- rock'n'roll, 10/10<br />Don’t")
  ["it's", 'not', 'great', "rock'n'roll", '10', '10', "don't"]
  """
  text = _BREAK.sub(' ', text).lower().replace('\u2019', "'")
  return _WORD.findall(text)


# ---------------------------------------------------------------------------- vocabulary

@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Words by id: ``words[0] == '<pad>'``, ``words[1] == '<unk>'``, then the corpus's."""
  words: tuple[str, ...]

  def __post_init__(self):
    if tuple(self.words[:2]) != (PAD, UNK):
      raise ValueError(f'a vocabulary starts with {PAD!r}, {UNK!r}; got {self.words[:2]}.')
    index = {w: i for i, w in enumerate(self.words)}
    if len(index) != len(self.words):
      raise ValueError('a vocabulary lists each word once.')
    object.__setattr__(self, '_index', index)

  @classmethod
  def build(cls, docs: Iterable[Sequence[str]], max_vocab: int = 0,
            min_count: int = 1) -> 'Vocabulary':
    """The words of ``docs`` (token lists) seen ``min_count``+ times, most frequent first.

    ``max_vocab``: entries in all, ``<pad>`` and ``<unk>`` included (0: no cap).
    Ties in count are broken alphabetically, so the ids never depend on order.
    """
    if max_vocab and max_vocab < 3:
      raise ValueError(f'task.max_vocab={max_vocab} leaves no room for a word besides '
                       f'{PAD} and {UNK}; use 0 (no cap) or a value of 3 or more.')
    if min_count < 1:
      raise ValueError(f'task.min_count must be at least 1, got {min_count}.')
    counts = collections.Counter(w for doc in docs for w in doc)
    ranked = sorted((w for w, c in counts.items() if c >= min_count),
                    key=lambda w: (-counts[w], w))
    if max_vocab:
      ranked = ranked[:max_vocab - 2]
    return cls((PAD, UNK, *ranked))

  def __len__(self) -> int:
    return len(self.words)

  def index(self, word: str) -> int:
    """The id of ``word``, ``UNK_ID`` when it is not in the vocabulary."""
    return self._index.get(word, UNK_ID)

  def get(self, word: str) -> int | None:
    """The id of ``word``, None when it is not in the vocabulary."""
    return self._index.get(word)

  def encode(self, docs: Sequence[Sequence[str]], max_len: int) -> tuple[np.ndarray, int]:
    """``(ids (N, max_len) int32, truncated)``: padded with 0, OOV -> 1, cut after ``max_len``.

    ``truncated`` counts the documents longer than ``max_len``.
    """
    if max_len < 1:
      raise ValueError(f'task.max_len must be positive, got {max_len}.')
    ids = np.zeros((len(docs), max_len), np.int32)
    truncated = 0
    for i, doc in enumerate(docs):
      truncated += len(doc) > max_len
      row = [self.index(w) for w in doc[:max_len]]
      ids[i, :len(row)] = row
    return ids, truncated

  def decode(self, ids: Sequence[int]) -> list[str]:
    """The words of ``ids``, padding dropped."""
    return [self.words[int(i)] for i in ids if int(i) != PAD_ID]


# ---------------------------------------------------------------------------- corpora

@dataclasses.dataclass
class TextSplit:
  """Tokenised documents of one split, before a vocabulary turns them into ids.

  Attributes:
    docs: one token list per document.
    labels: (N,) int32 class ids.
    class_names: one name per class.
    source: where they came from (for messages).
    extras: per-document arrays (the synthetic corpus's ``negated``).
  """
  docs: list[list[str]]
  labels: np.ndarray
  class_names: tuple[str, ...]
  source: str
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.docs)

  def take(self, indices: Sequence[int]) -> 'TextSplit':
    indices = np.asarray(indices, np.int64)
    return dataclasses.replace(self, docs=[self.docs[i] for i in indices],
                               labels=self.labels[indices],
                               extras={k: v[indices] for k, v in self.extras.items()})


POSITIVE = ('good', 'great', 'excellent', 'wonderful', 'brilliant', 'enjoyable', 'superb',
            'charming', 'moving', 'fun')
NEGATIVE = ('bad', 'awful', 'terrible', 'boring', 'dull', 'poor', 'weak', 'horrible',
            'tedious', 'mediocre')
# Sentiment verbs: (base form after "did not", past form).
POSITIVE_VERBS = (('like', 'liked'), ('love', 'loved'), ('enjoy', 'enjoyed'),
                  ('admire', 'admired'))
NEGATIVE_VERBS = (('hate', 'hated'), ('dislike', 'disliked'), ('detest', 'detested'),
                  ('regret', 'regretted'))
NEGATORS = frozenset({'not', 'never', 'hardly', "wasn't", "isn't", "didn't", "doesn't"})
INTENSIFIERS = ('very', 'really', 'truly', 'extremely', 'so', 'quite')
POLARITY = {**{w: 1 for w in POSITIVE}, **{w: -1 for w in NEGATIVE},
            **{w: 1 for pair in POSITIVE_VERBS for w in pair},
            **{w: -1 for pair in NEGATIVE_VERBS for w in pair}}
SUBJECTS = ('the movie', 'the film', 'the plot', 'the acting', 'the story', 'the ending',
            'the cast', 'the script', 'the music', 'the dialogue', 'the direction',
            'the pacing', 'the cinematography', 'the lead', 'this sequel', 'the soundtrack')
# Copulas: (plain, negated forms); the negator sits right before the (intensified) word.
COPULAS = (('was', ('was not', "wasn't", 'was never', 'was hardly')),
           ('is', ('is not', "isn't", 'is never', 'is hardly')),
           ('seemed', ('never seemed', 'did not seem', "didn't seem")),
           ('felt', ('never felt', 'did not feel', "didn't feel")))
FILLERS = (
    'i watched it last weekend', 'i saw it with my family', 'it runs about two hours',
    'it is based on a novel', 'i had never read the book', 'the trailer did not show much',
    'my sister picked it', 'it came out last year', 'we rented it on a rainy sunday',
    'it is not a remake', 'i went in knowing nothing about it', 'the director made three films',
    'it never played in our town', 'there are no subtitles', 'the theater was half empty',
    'it is the second part of a trilogy', 'the poster shows a lighthouse',
    'i did not know any of the actors', 'it was filmed in canada', 'overall', 'in my opinion',
    'to be honest', 'for what it is worth', 'as for the rest',
    "the studio didn't change the title", 'the book was written in the sixties')


def rule_label(tokens: Sequence[str]) -> int:
  """The synthetic corpus's label of a token list: 1 positive, 0 negative, -1 undecided.

  Each sentiment word (:data:`POLARITY`) counts +-1, flipped when a negator
  (:data:`NEGATORS`) is one of the two tokens before it; the label is the
  sign of the sum.
  """
  score = 0
  for i, w in enumerate(tokens):
    if w in POLARITY:
      flipped = any(t in NEGATORS for t in tokens[max(0, i - 2):i])
      score += -POLARITY[w] if flipped else POLARITY[w]
  return 1 if score > 0 else 0 if score < 0 else -1


def _phrase(rng: np.random.Generator, label: int, negate: bool) -> str:
  """One sentiment phrase whose effective polarity is ``label`` (1 positive, 0 negative)."""
  positive_word = (label == 1) != negate  # a negated phrase uses the opposite word
  intensifier = INTENSIFIERS[rng.integers(len(INTENSIFIERS))] + ' ' if rng.random() < 0.4 else ''
  if rng.random() < 0.3:  # "i (did not) (really) like it"
    base, past = (POSITIVE_VERBS if positive_word else NEGATIVE_VERBS)[
        rng.integers(len(POSITIVE_VERBS))]
    really = 'really ' if intensifier else ''
    if negate:
      head = ('did not', "didn't", 'never')[rng.integers(3)]
      verb = past if head == 'never' else base
    else:
      head, verb = '', past
    return ' '.join(filter(None, ('i', head, really + verb, 'it')))
  words = POSITIVE if positive_word else NEGATIVE
  plain, negated = COPULAS[rng.integers(len(COPULAS))]
  copula = negated[rng.integers(len(negated))] if negate else plain
  if copula.split()[-1] not in NEGATORS and negate:
    intensifier = ''  # "did not seem good": an intensifier would put the negator 3 back
  return f'{SUBJECTS[rng.integers(len(SUBJECTS))]} {copula} {intensifier}' \
         f'{words[rng.integers(len(words))]}'


def synthetic_review(rng: np.random.Generator, label: int) -> tuple[str, bool]:
  """``(text, negated)``: one review of class ``label``; ``negated``: a phrase is negated."""
  phrases, negated = [], False
  for _ in range(1 + int(rng.random() < 0.4)):
    negate = bool(rng.random() < 0.5)
    negated |= negate
    phrases.append(_phrase(rng, label, negate))
  fillers = [FILLERS[i] for i in rng.choice(len(FILLERS), rng.integers(0, 4), replace=False)]
  parts = phrases + fillers
  order = rng.permutation(len(parts))
  joins = (' and ', ', ', '. ')
  text = parts[order[0]]
  for i in order[1:]:
    text += joins[rng.integers(len(joins))] + parts[i]
  return text.capitalize() + '.', negated


def synthetic_sentiment(num_examples: int, *, seed: int = 0, train: bool = True) -> TextSplit:
  """``num_examples`` generated reviews, half positive (deterministic in ``seed``, ``train``)."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0 if train else 1, 0x7E47]))
  labels = rng.permutation(np.arange(num_examples) % 2).astype(np.int32)
  docs, negated = [], np.zeros(num_examples, bool)
  for i, label in enumerate(labels):
    text, negated[i] = synthetic_review(rng, int(label))
    docs.append(tokenize(text))
  return TextSplit(docs, labels, ('neg', 'pos'),
                   f'synthetic_sentiment ({"train" if train else "eval"}, seed {seed})',
                   {'negated': negated})


def _bad(what: str, skipped: list[str], skip_corrupt: bool, message: str) -> None:
  if not skip_corrupt:
    raise ValueError(message)
  skipped.append(what)


def _warn_skipped(skipped: list[str], where: str) -> None:
  if skipped:
    shown = '; '.join(skipped[:_SHOW]) + ('; ...' if len(skipped) > _SHOW else '')
    warnings.warn(f'skipped {len(skipped)} unreadable or empty review(s) in {where}: {shown}',
                  stacklevel=3)


def _decode(data: bytes | str, what: str, skipped: list[str], skip_corrupt: bool
            ) -> list[str] | None:
  """Tokens of one review, or None when it was skipped (``skip_corrupt``)."""
  if isinstance(data, bytes):
    try:
      data = data.decode('utf-8')
    except UnicodeDecodeError as e:
      _bad(what, skipped, skip_corrupt,
           f'{what} is not UTF-8 text (byte {e.start}: {e.reason}); convert it (e.g. iconv -t '
           'utf-8) or set --config.data.skip_corrupt=True to skip such reviews.')
      return None
  tokens = tokenize(data)
  if not tokens:
    _bad(what, skipped, skip_corrupt,
         f'{what} is an empty review (no words); remove it or set '
         '--config.data.skip_corrupt=True to skip empty reviews.')
    return None
  return tokens


TEXT_SUFFIX = '.txt'
UNLABELLED = 'unsup'  # aclImdb's unlabelled reviews: never a class


def read_text_folder(root: str | os.PathLike, split: str, *,
                     skip_corrupt: bool = False) -> TextSplit:
  """Every ``<root>/<split>/<class>/*.txt``, classes in sorted folder order.

  Raises:
    FileNotFoundError: ``<root>/<split>`` is not a folder.
    ValueError: no class folder, a class folder without ``.txt`` files, or
      (without ``skip_corrupt``) a file that is not UTF-8 or holds no word;
      each names the folder or file.
  """
  split_dir = pathlib.Path(root).expanduser() / split
  if not split_dir.is_dir():
    raise FileNotFoundError(
        f'text folder {split_dir} does not exist; expected <root>/<split>/<class>/*.txt '
        '(aclImdb: --config.data.root=.../aclImdb, splits train and test).')
  classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and d.name != UNLABELLED)
  if not classes:
    raise ValueError(f'text folder {split_dir} has no class folders; expected '
                     f'{split_dir}/<class>/*.txt, e.g. pos/ and neg/.')
  docs, labels, skipped = [], [], []
  for label, name in enumerate(classes):
    files = sorted((split_dir / name).glob(f'*{TEXT_SUFFIX}'))
    if not files:
      raise ValueError(f'class folder {split_dir / name} has no {TEXT_SUFFIX} files.')
    for path in files:
      tokens = _decode(path.read_bytes(), str(path), skipped, skip_corrupt)
      if tokens is not None:
        docs.append(tokens)
        labels.append(label)
  _warn_skipped(skipped, str(split_dir))
  if not docs:
    raise ValueError(f'every review in {split_dir} was skipped; check the folder.')
  return TextSplit(docs, np.asarray(labels, np.int32), tuple(classes), str(split_dir))


def read_tfds_text(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                   text_key: str = 'text', label_key: str = 'label',
                   skip_corrupt: bool = False) -> TextSplit:
  """A prepared tfds text split (``imdb_reviews``) read through ``tfds.data_source``.

  Raises:
    FileNotFoundError: not prepared in ``data_dir`` (nothing is downloaded).
    ValueError: unknown name or feature keys, an empty split, or (without
      ``skip_corrupt``) a record that is not UTF-8 or holds no word.
  """
  from cnn_jax.data.tfds import class_names_of, open_tfds
  records, info = open_tfds(name, split, data_dir=data_dir)
  if len(records) == 0:
    raise ValueError(f'TFDS split {name}[{split!r}] is empty.')
  docs, labels, skipped = [], [], []
  for i in range(len(records)):  # one at a time: mock_data's __getitems__ is broken (4.9.10)
    record = records[i]
    for key, what in ((text_key, 'text_key'), (label_key, 'label_key')):
      if key not in record:
        raise ValueError(f'{what} {key!r} is not a feature of {name} (features: '
                         f'{sorted(record)}); set task.{what}.')
    tokens = _decode(_scalar(record[text_key]), f'{name}[{split!r}] record {i}', skipped,
                     skip_corrupt)
    if tokens is not None:
      docs.append(tokens)
      labels.append(int(record[label_key]))
  _warn_skipped(skipped, f'{name}[{split!r}]')
  labels = np.asarray(labels, np.int32)
  return TextSplit(docs, labels, class_names_of(info, label_key, labels), f'{name}[{split!r}]')


def _scalar(value: Any) -> bytes | str:
  """A text feature as ``bytes`` or ``str`` (tfds gives either, maybe in a 0-d array)."""
  if isinstance(value, np.ndarray):
    value = value.item()
  return value


# ---------------------------------------------------------------------------- embeddings

@dataclasses.dataclass(frozen=True, eq=False)
class Pretrained:
  """Pretrained vectors of a vocabulary (a model field: hashed by identity, never compared).

  Attributes:
    vectors: (V, D) float32, row ``i`` the vector of word ``i`` where ``found``.
    found: (V,) bool, the words the file has; the others keep a random init.
    source: the file.
  """
  vectors: np.ndarray
  found: np.ndarray
  source: str = ''

  @property
  def dim(self) -> int:
    return int(self.vectors.shape[1])


def load_embeddings(path: str | os.PathLike, vocab: Vocabulary, dim: int | None = None,
                    *, dim_key: str = 'model.kwargs.embed_dim') -> Pretrained:
  """The vectors of ``vocab``'s words in a GloVe / word2vec text file.

  A word matches its exact form, else (GloVe is lowercase, word2vec is not)
  the first cased form whose lowercase it is. The first line is skipped when
  it is word2vec's ``count dim`` header.

  Args:
    path: the text file, UTF-8.
    vocab: the vocabulary the rows follow.
    dim: the model's embedding size; None takes the file's.
    dim_key: the config key of ``dim``, for the error message.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file's vectors are not ``dim``-d (one line naming both),
      lines of different lengths, a number that does not parse, text that is
      not UTF-8 (each naming the file and line), or no vector at all.
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f'embeddings file {path} does not exist; set task.embeddings to a '
                            'GloVe/word2vec text file or to "" for random embeddings.')
  n = len(vocab)
  vectors, found, exact = None, np.zeros(n, bool), np.zeros(n, bool)
  file_dim = None
  with open(path, 'rb') as f:
    for number, raw in enumerate(f, 1):
      try:
        line = raw.decode('utf-8').rstrip()
      except UnicodeDecodeError as e:
        raise ValueError(f'embeddings file {path} line {number} is not UTF-8 (byte {e.start}); '
                         'convert the file to UTF-8.') from None
      parts = line.split(' ')
      if not line:
        continue
      if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
        continue  # word2vec's "count dim" header
      if file_dim is None:
        file_dim = len(parts) - 1
        if dim is not None and file_dim != dim:
          raise ValueError(f'embeddings file {path} has {file_dim}-d vectors but {dim_key} is '
                           f'{dim}; set --config.{dim_key}={file_dim} or use a {dim}-d file.')
        if file_dim < 1:
          raise ValueError(f'embeddings file {path} line {number} holds no vector; expected '
                           '"word v1 v2 ..." lines.')
        vectors = np.zeros((n, file_dim), np.float32)
      elif len(parts) - 1 != file_dim:
        raise ValueError(f'embeddings file {path} line {number} has {len(parts) - 1} numbers, '
                         f'earlier lines {file_dim}.')
      word = parts[0]
      i = vocab.get(word)
      is_exact = i is not None
      if i is None:
        i = vocab.get(word.lower())
        if i is None or found[i]:
          continue
      elif exact[i]:
        continue
      try:
        vectors[i] = np.asarray(parts[1:], np.float32)
      except ValueError:
        raise ValueError(f'embeddings file {path} line {number} has a value that is not a '
                         'number.') from None
      found[i], exact[i] = True, is_exact
  if vectors is None:
    raise ValueError(f'embeddings file {path} holds no vectors.')
  found[PAD_ID] = False  # padding is always a zero input, never a pretrained vector
  words = n - 2
  hits = int(found[2:].sum())
  warnings.warn(f'embeddings: {hits} of {words} vocabulary words found in {path}; the other '
                f'{words - hits} keep their random init.', stacklevel=2)
  return Pretrained(vectors, found, str(path))


def warn_truncated(count: int, total: int, max_len: int, source: str) -> None:
  """The one report of a split's truncated documents."""
  if count:
    warnings.warn(f'{count} of {total} reviews in {source} are longer than task.max_len='
                  f'{max_len} tokens and were truncated (their first {max_len} tokens kept).',
                  stacklevel=2)
