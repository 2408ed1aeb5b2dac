"""Corpus BLEU (Papineni, Roukos, Ward and Zhu, ACL 2002), in plain Python on the host.

BLEU is a corpus metric: n-gram matches and lengths are summed over every
sentence before any ratio is taken, so it is computed once over a whole
evaluation set of decoded captions (tokens of any hashable type: words or ids)
rather than per batch on the device.

For ``n = 1..max_n``:

* ``p_n``, the clipped ("modified") n-gram precision: each hypothesis n-gram
  counts at most as often as it occurs in the one reference where it occurs
  most; ``p_n = sum of clipped counts / number of hypothesis n-grams``, both
  summed over the corpus (Sec. 2.1).
* ``BP``, the brevity penalty: ``c`` is the total hypothesis length and ``r``
  the sum over sentences of the reference length closest to the hypothesis
  length (ties go to the shorter reference); ``BP = 1`` if ``c > r`` else
  ``exp(1 - r / c)`` (Sec. 2.2.2).
* ``BLEU-n = BP * exp(sum_{k<=n} log(p_k) / n)``: uniform weights over the
  first ``n`` orders (BLEU-4 is the usual "BLEU").

There is no smoothing: when some ``p_k`` is 0 (no k-gram matches anywhere in
the corpus, or no hypothesis is k tokens long), ``BLEU-n`` is 0 for every
``n >= k``, as in the paper and NLTK's ``corpus_bleu`` without a smoothing
function. An all-empty corpus of hypotheses scores 0. Tokenisation (case,
punctuation, special tokens such as ``<eos>``) is the caller's: compare what
you mean to compare.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

Tokens = Sequence[Hashable]


def ngram_counts(tokens: Tokens, n: int) -> Counter:
  """How often each n-gram (a tuple of ``n`` tokens) occurs in ``tokens``."""
  tokens = tuple(tokens)
  return Counter(tokens[i:i + n] for i in range(len(tokens) - n + 1))


def closest_reference_length(reference_lengths: Sequence[int], hypothesis_length: int) -> int:
  """The reference length nearest ``hypothesis_length``; on a tie, the shorter one."""
  return min(reference_lengths, key=lambda r: (abs(r - hypothesis_length), r))


def _is_tokens(value) -> bool:
  return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _check_corpus(references, hypotheses, max_n: int) -> None:
  if not isinstance(max_n, int) or max_n < 1:
    raise ValueError(f'corpus_bleu: max_n must be a positive int, got {max_n!r}.')
  if len(references) != len(hypotheses) or not hypotheses:
    raise ValueError(f'corpus_bleu needs one list of references per hypothesis and at least '
                     f'one hypothesis, got {len(references)} and {len(hypotheses)}.')
  for i, (refs, hyp) in enumerate(zip(references, hypotheses)):
    if not _is_tokens(hyp):
      raise ValueError(f'corpus_bleu: hypotheses[{i}] must be a token list, got '
                       f'{type(hyp).__name__}; tokenize first (e.g. sentence.split()).')
    if not _is_tokens(refs) or not refs or not all(_is_tokens(ref) for ref in refs):
      raise ValueError(f'corpus_bleu: references[{i}] must be a non-empty list of token lists '
                       '(one per reference); wrap a single tokenized reference as [ref].')


def corpus_bleu(references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens],
                max_n: int = 4) -> dict[str, float]:
  """BLEU-1..``max_n`` of a corpus, Papineni et al. (2002), without smoothing.

  Args:
    references: ``references[i]`` is the list of reference token lists of
      sentence ``i`` (e.g. the 5 captions of an image).
    hypotheses: ``hypotheses[i]`` is the token list produced for sentence ``i``.
    max_n: the highest n-gram order.

  Returns:
    A dict of floats: ``'bleu_1'`` .. ``f'bleu_{max_n}'``, ``'bleu'`` (=
    ``BLEU-max_n``), the corpus precisions ``'precision_1'`` ..,
    ``'brevity_penalty'``, and the lengths ``'hypothesis_length'`` (``c``)
    and ``'reference_length'`` (``r``).
  """
  _check_corpus(references, hypotheses, max_n)
  matches, totals = [0] * max_n, [0] * max_n
  c = r = 0
  for refs, hyp in zip(references, hypotheses):
    c += len(hyp)
    r += closest_reference_length([len(ref) for ref in refs], len(hyp))
    for n in range(1, max_n + 1):
      counts = ngram_counts(hyp, n)
      max_ref_counts = Counter()
      for ref in refs:
        max_ref_counts |= ngram_counts(ref, n)  # | keeps the larger count of each n-gram
      matches[n - 1] += sum(min(k, max_ref_counts[g]) for g, k in counts.items())
      totals[n - 1] += sum(counts.values())
  precisions = [m / t if t else 0.0 for m, t in zip(matches, totals)]
  if c > r:
    bp = 1.0
  else:
    bp = math.exp(1 - r / c) if c else 0.0
  out = {'brevity_penalty': bp, 'hypothesis_length': float(c), 'reference_length': float(r)}
  log_sum = 0.0
  for n, p in enumerate(precisions, start=1):
    out[f'precision_{n}'] = p
    log_sum = log_sum + math.log(p) if p > 0 else -math.inf
    out[f'bleu_{n}'] = bp * math.exp(log_sum / n) if log_sum > -math.inf else 0.0
  out['bleu'] = out[f'bleu_{max_n}']
  return out
