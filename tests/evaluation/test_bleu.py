"""Corpus BLEU on examples computed by hand (most from Papineni et al. 2002 itself)."""

import math

import pytest

from cnn_jax.evaluation.bleu import closest_reference_length, corpus_bleu, ngram_counts


def _tok(sentence):
  return sentence.lower().replace('.', '').split()


# Papineni et al. (2002), Example 1 (Sec. 2): two candidates, three references.
PAPINENI_REFS = [_tok(s) for s in (
    'It is a guide to action that ensures that the military will forever heed Party commands.',
    'It is the guiding principle which guarantees the military forces always being under the '
    'command of the Party.',
    'It is the practical guide for the army always to heed the directions of the party.')]
CANDIDATE_1 = _tok('It is a guide to action which ensures that the military always obeys the '
                   'commands of the party.')
CANDIDATE_2 = _tok('It is to insure the troops forever hearing the activity guidebook that '
                   'party direct.')


def test_papineni_the_the_the_modified_precision():
  # Example 2 (Sec. 2.1): 'the' occurs 7 times in the candidate but at most twice in one
  # reference, so the clipped unigram precision is 2/7 (plain precision would be 7/7).
  refs = [_tok('The cat is on the mat.'), _tok('There is a cat on the mat.')]
  out = corpus_bleu([refs], [['the'] * 7])
  assert out['precision_1'] == pytest.approx(2 / 7)
  # c = 7; reference lengths 6 and 7, the closest is 7: no brevity penalty.
  assert out['reference_length'] == 7 and out['brevity_penalty'] == 1.0
  assert out['bleu_1'] == pytest.approx(2 / 7)
  # 'the the' is in no reference: p_2 = 0, so BLEU-2..4 are 0 (no smoothing).
  assert out['precision_2'] == 0.0
  assert out['bleu_2'] == out['bleu_4'] == out['bleu'] == 0.0


@pytest.mark.parametrize('candidate,p1,p2', [
    (CANDIDATE_1, 17 / 18, 10 / 17),  # Sec. 2.1: 17/18 unigrams, 10/17 bigrams
    (CANDIDATE_2, 8 / 14, 1 / 13),    # Sec. 2.1: 8/14 unigrams, 1/13 bigrams
])
def test_papineni_example_1_precisions(candidate, p1, p2):
  out = corpus_bleu([PAPINENI_REFS], [candidate])
  assert out['precision_1'] == pytest.approx(p1)
  assert out['precision_2'] == pytest.approx(p2)


def test_candidate_1_full_bleu_by_hand_and_nltk_documented_value():
  # Candidate 1: 18 tokens; reference lengths 16, 18, 16 -> r = 18, BP = 1. Its 3- and
  # 4-gram precisions are 7/16 and 4/15, so BLEU-4 = (17/18 * 10/17 * 7/16 * 4/15)^(1/4).
  out = corpus_bleu([PAPINENI_REFS], [CANDIDATE_1])
  assert out['precision_3'] == pytest.approx(7 / 16)
  assert out['precision_4'] == pytest.approx(4 / 15)
  assert out['bleu'] == pytest.approx((17 / 18 * 10 / 17 * 7 / 16 * 4 / 15) ** 0.25)
  # NLTK's corpus_bleu docstring example (case kept): 0.5920778868801042.
  hyp1 = ('It is a guide to action which ensures that the military always obeys the commands '
          'of the party').split()
  refs1 = [('It is a guide to action that ensures that the military will forever heed Party '
            'commands').split(),
           ('It is the guiding principle which guarantees the military forces always being '
            'under the command of the Party').split(),
           ('It is the practical guide for the army always to heed the directions of the '
            'party').split()]
  hyp2 = 'he read the book because he was interested in world history'.split()
  refs2 = ['he was interested in world history because he read the book'.split()]
  assert corpus_bleu([refs1, refs2], [hyp1, hyp2])['bleu'] == pytest.approx(0.5920778868801042)


def test_brevity_penalty_by_hand():
  # c = 2, r = 6: BP = exp(1 - 6/2) = e^-2. Both uni- and bigrams all match (p = 1),
  # and the 2-token candidate has no trigram: p_3 = 0/0 -> 0.
  out = corpus_bleu([[_tok('the cat sat on the mat')]], [_tok('the cat')])
  assert out['brevity_penalty'] == pytest.approx(math.exp(-2))
  assert out['bleu_1'] == pytest.approx(math.exp(-2))
  assert out['bleu_2'] == pytest.approx(math.exp(-2))
  assert out['bleu_3'] == 0.0


def test_closest_reference_length_ties_to_the_shorter():
  assert closest_reference_length([4, 6], 5) == 4
  assert closest_reference_length([6, 4], 5) == 4
  assert closest_reference_length([2, 9, 7], 8) == 7
  # A 5-token candidate with references of 4 and 6 tokens: r = 4 < c, so BP = 1 (a tie
  # broken towards the longer reference would give exp(1 - 6/5) = 0.82).
  out = corpus_bleu([[list('abcd'), list('abcdef')]], [list('abcde')])
  assert out['reference_length'] == 4 and out['brevity_penalty'] == 1.0
  assert out['bleu_1'] == 1.0


def test_corpus_sums_counts_before_dividing():
  # Sentence 1 matches fully; sentence 2 ('c d' vs 'c e') matches 1 of 2 unigrams and no
  # bigram. Corpus: p_1 = 3/4, p_2 = 1/2, c = r = 4, so BLEU-2 = sqrt(3/8) = 0.612, not the
  # mean of the sentence scores (1 + 0) / 2.
  out = corpus_bleu([[['a', 'b']], [['c', 'e']]], [['a', 'b'], ['c', 'd']], max_n=2)
  assert out['precision_1'] == pytest.approx(3 / 4)
  assert out['precision_2'] == pytest.approx(1 / 2)
  assert out['bleu'] == pytest.approx(math.sqrt(3 / 8))
  assert set(out) == {'bleu', 'bleu_1', 'bleu_2', 'precision_1', 'precision_2',
                      'brevity_penalty', 'hypothesis_length', 'reference_length'}


def test_clipping_takes_the_max_over_references_not_the_sum():
  # 'the' occurs once in each reference: clipped count 1, not 2.
  out = corpus_bleu([[_tok('the cat'), _tok('the dog')]], [_tok('the the')], max_n=1)
  assert out['precision_1'] == pytest.approx(1 / 2)


def test_perfect_match_is_one_and_token_ids_work():
  refs = [[[3, 1, 4, 1, 5, 9]], [[2, 6, 5, 3, 5], [2, 7, 1]]]
  hyps = [[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5]]
  out = corpus_bleu(refs, hyps)
  for n in range(1, 5):
    assert out[f'bleu_{n}'] == 1.0
  assert out['brevity_penalty'] == 1.0


def test_empty_hypotheses_score_zero():
  out = corpus_bleu([[['a', 'b']]], [[]])
  assert out['bleu'] == out['bleu_1'] == out['brevity_penalty'] == 0.0


def test_ngram_counts():
  assert ngram_counts('a b a b'.split(), 2) == {('a', 'b'): 2, ('b', 'a'): 1}
  assert ngram_counts(['a'], 2) == {}


def test_errors():
  with pytest.raises(ValueError, match=r'hypotheses\[0\] must be a token list.*tokenize first'):
    corpus_bleu([[['a']]], ['a b'])
  with pytest.raises(ValueError, match=r'references\[0\] must be a non-empty list of token lists'):
    corpus_bleu([['a', 'b']], [['a', 'b']])  # a single reference not wrapped in a list
  with pytest.raises(ValueError, match=r'references\[0\]'):
    corpus_bleu([[1, 2]], [[1, 2]])
  with pytest.raises(ValueError, match=r'references\[0\]'):
    corpus_bleu([[]], [['a']])
  with pytest.raises(ValueError, match=r'one list of references per hypothesis.*got 2 and 1'):
    corpus_bleu([[['a']], [['b']]], [['a']])
  with pytest.raises(ValueError, match=r'max_n must be a positive int'):
    corpus_bleu([[['a']]], [['a']], max_n=0)
