"""Text data: tokenizer, vocabulary, synthetic sentiment corpus, folder and tfds readers, GloVe."""

import numpy as np
import pytest

from cnn_jax.data import text as T


# ---------------------------------------------------------------------------- tokenizer

@pytest.mark.parametrize('raw,tokens', [
    ("It's NOT good", ["it's", 'not', 'good']),
    ("Don\u2019t 'quote' me", ["don't", 'quote', 'me']),          # typographic apostrophe
    ("students' rock'n'roll o'clock", ['students', "rock'n'roll", "o'clock"]),
    ('well-made, 7/10!!', ['well', 'made', '7', '10']),
    ('line one<br /><br />line two', ['line', 'one', 'line', 'two']),  # IMDB's breaks
    ('Naïve café_au_lait', ['naïve', 'café', 'au', 'lait']),      # letters of any script
    ("  ' -- ...  ", []),
])
def test_tokenize_by_hand(raw, tokens):
  assert T.tokenize(raw) == tokens


# ---------------------------------------------------------------------------- vocabulary

DOCS = [['b', 'a', 'a'], ['c', 'b', 'a'], ['d']]  # a: 3, b: 2, c: 1, d: 1


def test_vocabulary_by_hand():
  v = T.Vocabulary.build(DOCS)
  assert v.words == ('<pad>', '<unk>', 'a', 'b', 'c', 'd')  # by count, ties alphabetical
  assert T.Vocabulary.build(DOCS, min_count=2).words == ('<pad>', '<unk>', 'a', 'b')
  assert T.Vocabulary.build(DOCS, max_vocab=3).words == ('<pad>', '<unk>', 'a')
  assert T.Vocabulary.build(reversed(DOCS)).words == v.words  # order of documents is irrelevant
  assert (v.index('a'), v.index('zebra'), v.get('zebra')) == (2, T.UNK_ID, None)


def test_encode_pads_maps_oov_and_counts_truncation():
  v = T.Vocabulary.build(DOCS, min_count=2)  # c, d are out of vocabulary
  ids, truncated = v.encode([['a', 'c', 'b'], ['d'], ['b', 'b', 'a', 'a', 'c']], max_len=4)
  assert ids.dtype == np.int32
  np.testing.assert_array_equal(ids, [[2, 1, 3, 0], [1, 0, 0, 0], [3, 3, 2, 2]])
  assert truncated == 1  # only the 5-token document
  assert v.decode(ids[0]) == ['a', '<unk>', 'b']
  assert v.encode([['a'] * 4], 4)[1] == 0  # exactly max_len is not truncated


def test_vocabulary_errors():
  with pytest.raises(ValueError, match='max_vocab=2 leaves no room'):
    T.Vocabulary.build(DOCS, max_vocab=2)
  with pytest.raises(ValueError, match='min_count must be at least 1'):
    T.Vocabulary.build(DOCS, min_count=0)
  with pytest.raises(ValueError, match='max_len must be positive'):
    T.Vocabulary.build(DOCS).encode(DOCS, 0)
  with pytest.raises(ValueError, match='starts with'):
    T.Vocabulary(('a', 'b'))


# ---------------------------------------------------------------------------- synthetic corpus

@pytest.mark.parametrize('sentence,label', [
    ('the acting was good', 1),
    ('the acting was not good', 0),
    ('the acting was not very good', 0),      # negator two back, past an intensifier
    ("the ending wasn't boring", 1),
    ('i did not really like it', 0),
    ('the plot is truly dull', 0),
    ('i had never read the book and the cast was great', 1),  # a negator far away
    ('it was fine', -1),                      # no sentiment word: undecided
])
def test_rule_label_by_hand(sentence, label):
  assert T.rule_label(T.tokenize(sentence)) == label


@pytest.fixture(scope='module')
def corpus():
  return T.synthetic_sentiment(3000, seed=0)


def test_every_generated_review_follows_the_rule(corpus):
  assert [T.rule_label(d) for d in corpus.docs] == corpus.labels.tolist()
  assert corpus.labels.sum() == 1500 and corpus.class_names == ('neg', 'pos')
  assert 0.4 < corpus.extras['negated'].mean() < 0.8


def test_negation_flips_in_generated_reviews(corpus):
  """'... not (very) good' comes out negative, '... not (very) bad' positive, both plentiful."""
  seen = {0: 0, 1: 0}
  for doc, label, negated in zip(corpus.docs, corpus.labels, corpus.extras['negated']):
    for i, w in enumerate(doc):
      if w in T.POLARITY and any(t in T.NEGATORS for t in doc[max(0, i - 2):i]):
        assert negated
        assert label == (T.POLARITY[w] < 0), ' '.join(doc)  # the flipped polarity is the label
        seen[int(label)] += 1
  assert min(seen.values()) > 300


def test_bag_of_words_cannot_tell_negated_reviews(corpus):
  """A sentiment word is as likely in either class once negation is in play."""
  good = np.array(['good' in d for d in corpus.docs])
  neg = corpus.extras['negated']
  assert abs(corpus.labels[good & neg].mean() - 0.5) > 0.3  # 'good' in a negated review...
  assert abs(corpus.labels[good].mean() - 0.5) < 0.25       # ...blurs 'good' over both classes


def test_synthetic_is_deterministic_and_splits_differ():
  a, b = T.synthetic_sentiment(50, seed=3), T.synthetic_sentiment(50, seed=3)
  assert a.docs == b.docs and np.array_equal(a.labels, b.labels)
  assert T.synthetic_sentiment(50, seed=3, train=False).docs != a.docs


# ---------------------------------------------------------------------------- folder reader

def _write(path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data if isinstance(data, bytes) else data.encode('utf-8'))


def _imdb_like(root):
  _write(root / 'train/pos/0_9.txt', 'A great film.<br />Loved it')
  _write(root / 'train/pos/1_8.txt', "Don't miss it")
  _write(root / 'train/neg/2_1.txt', 'Dull and boring')
  _write(root / 'train/unsup/3_0.txt', 'unlabelled: never a class')
  _write(root / 'train/README', 'not a review')


def test_text_folder_reads_the_aclimdb_layout(tmp_path):
  _imdb_like(tmp_path)
  s = T.read_text_folder(tmp_path, 'train')
  assert s.class_names == ('neg', 'pos')  # sorted: neg = 0, pos = 1 as in tfds imdb_reviews
  assert s.labels.tolist() == [0, 1, 1]
  assert s.docs == [['dull', 'and', 'boring'], ['a', 'great', 'film', 'loved', 'it'],
                    ["don't", 'miss', 'it']]


def test_text_folder_errors_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'text folder .*train does not exist; expected '
                     r'<root>/<split>/<class>/\*.txt'):
    T.read_text_folder(tmp_path, 'train')
  _imdb_like(tmp_path)
  latin1 = tmp_path / 'train/neg/4_2.txt'
  _write(latin1, 'caf\xe9 au lait, m\xe9diocre'.encode('latin-1'))
  with pytest.raises(ValueError, match=rf'{latin1} is not UTF-8 text .*skip_corrupt=True'):
    T.read_text_folder(tmp_path, 'train')
  latin1.unlink()
  empty = tmp_path / 'train/pos/5_7.txt'
  _write(empty, ' \n<br /> -- \n')
  with pytest.raises(ValueError, match=rf'{empty} is an empty review \(no words\)'):
    T.read_text_folder(tmp_path, 'train')
  _write(latin1, b'\xff\xfe bad')
  with pytest.warns(UserWarning, match=r'skipped 2 unreadable or empty review\(s\) in .*train: '
                    r'.*4_2.txt; .*5_7.txt'):
    s = T.read_text_folder(tmp_path, 'train', skip_corrupt=True)
  assert len(s) == 3
  (tmp_path / 'test/pos').mkdir(parents=True)
  with pytest.raises(ValueError, match=r'class folder .*test/pos has no .txt files'):
    T.read_text_folder(tmp_path, 'test')


# ---------------------------------------------------------------------------- tfds

def test_tfds_imdb_reviews_with_mock_data():
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=6):
    s = T.read_tfds_text('imdb_reviews', 'train')
    with pytest.raises(ValueError, match=r"text_key 'review' is not a feature of imdb_reviews "
                       r"\(features: \['label', 'text'\]\)"):
      T.read_tfds_text('imdb_reviews', 'test', text_key='review')
  assert len(s) == 6 and s.class_names == ('neg', 'pos')
  assert s.labels.dtype == np.int32 and set(s.labels.tolist()) <= {0, 1}
  assert all(d and all(w == w.lower() for w in d) for d in s.docs)


def test_tfds_records_bytes_text_and_bad_records():
  """tfds gives text as bytes (maybe a 0-d array); bad records are named or skipped."""
  skipped = []
  assert T._decode(T._scalar(np.asarray(b'Fine film')), 'r', skipped, False) == ['fine', 'film']
  with pytest.raises(ValueError, match=r"imdb_reviews\['train'\] record 3 is not UTF-8"):
    T._decode(b'\xff', "imdb_reviews['train'] record 3", skipped, False)
  assert T._decode(b'', 'record 9', skipped, True) is None and skipped == ['record 9']


# ---------------------------------------------------------------------------- embeddings

def test_glove_rows_cased_matches_and_header(tmp_path):
  vocab = T.Vocabulary(('<pad>', '<unk>', 'good', 'bad', 'plot', 'zzz'))
  glove = tmp_path / 'glove.txt'
  glove.write_text('good 1 2 3\nBad 4 5 6\nbad 7 8 9\nPLOT 1 1 1\nPlot 2 2 2\nother 0 0 1\n')
  with pytest.warns(UserWarning, match='embeddings: 3 of 4 vocabulary words found'):
    p = T.load_embeddings(glove, vocab, 3)
  assert p.found.tolist() == [False, False, True, True, True, False]
  np.testing.assert_array_equal(p.vectors[2:5], [[1, 2, 3], [7, 8, 9], [1, 1, 1]])  # exact wins
  w2v = tmp_path / 'w2v.txt'
  w2v.write_text('3 2\ngood 0.5 -1\n\nplot 2 3\n')  # word2vec's header, a blank line
  with pytest.warns(UserWarning):
    q = T.load_embeddings(w2v, vocab)  # no dim: the file's
  assert q.dim == 2 and q.found.sum() == 2
  np.testing.assert_allclose(q.vectors[2], [0.5, -1])


def test_glove_dimension_and_format_errors(tmp_path):
  vocab = T.Vocabulary(('<pad>', '<unk>', 'good'))
  glove = tmp_path / 'glove.50d.txt'
  glove.write_text('good ' + ' '.join(['0.1'] * 50) + '\n')
  with pytest.raises(ValueError, match=rf'^embeddings file {glove} has 50-d vectors but '
                     r'model.kwargs.embed_dim is 32; set --config.model.kwargs.embed_dim=50 '
                     r'or use a 32-d file.$'):
    T.load_embeddings(glove, vocab, 32)
  glove.write_text('good 1 2\nbad 1 2 3\n')
  with pytest.raises(ValueError, match='line 2 has 3 numbers, earlier lines 2'):
    T.load_embeddings(glove, vocab, 2)
  glove.write_text('good 1 x\n')
  with pytest.raises(ValueError, match='line 1 has a value that is not a number'):
    T.load_embeddings(glove, vocab, 2)
  glove.write_bytes(b'good 1 2\n\xe9t\xe9 1 2\n')
  with pytest.raises(ValueError, match='line 2 is not UTF-8'):
    T.load_embeddings(glove, vocab, 2)
  with pytest.raises(FileNotFoundError, match='embeddings file .*nope.txt does not exist'):
    T.load_embeddings(tmp_path / 'nope.txt', vocab, 2)
