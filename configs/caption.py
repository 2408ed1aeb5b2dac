r"""Image captioning, Show and Tell (Vinyals et al. 2015), on synthetic scenes described in code.

  python -m cnn_jax.main --config=configs/caption.py --workdir=workdirs/caption
  python -m cnn_jax.main --config=configs/caption.py:beam=3 --workdir=workdirs/caption_beam3
  python -m experiments.caption report workdirs/caption       # captions.png

Synthetic 32x32 scenes of one or two objects of 4 kinds (disc, square,
triangle, ring), each with two reference captions written from what was
rendered (:mod:`cnn_jax.data.captions`): "a small red disc" / "there is a
small red disc", "a blue square above a green ring" / "a green ring below a
blue square". Task ``captioning``; model ``captioner``: the small CNN's last
feature map, flattened (``pool='flatten'``: where things are decides "above"
or "to the left of"), projected to the word-embedding size and fed to the
LSTM as its first input; teacher forcing with one reference drawn per image
and step; flips swap "left" and "right" in the captions. Evaluation decodes
greedily (``beam=K``: beam search of width K) and scores BLEU-1..4 against
both references.

``attention=True``: Show, Attend and Tell's soft attention over the 4x4
feature map's locations (Xu et al. 2015) instead of the one image vector.

Args: ``steps=6000,beam=1,pool='flatten'|'mean',attention=False``.

Result (2026-12-06, 2-core AMD EPYC, jax 0.10.2, CPU shared with other jobs), 500 test
scenes, each caption against both references, best checkpoint = the last (step 6000):

  python -m cnn_jax.main --config=configs/caption.py --workdir=workdirs/caption
    greedy: BLEU-1 0.860, BLEU-2 0.788, BLEU-3 0.732, BLEU-4 0.673, exact match 0.414,
            token accuracy 0.793 (teacher-forced, first reference), 6.8 words per caption;
            239 s wall (load average 1.9 at the start), 195k params, vocabulary of 33 tokens
    the same checkpoint decoded by beam search of width 3: BLEU-4 0.664, exact match 0.410;
            with task.length_penalty=0.7: BLEU-4 0.686, exact match 0.416
  python -m cnn_jax.main --config=configs/caption.py:attention=True \
      --workdir=workdirs/caption_attention
    greedy: BLEU-1 0.933, BLEU-2 0.899, BLEU-3 0.865, BLEU-4 0.827, exact match 0.690,
            token accuracy 0.884; 406 s wall (load average 2.6)

Of the 293 greedy captions that match no reference, compared word by word with the
nearer one, 224 name a colour wrongly (often a colour near a boundary of the table, teal
called green or cyan, or one object's colour given to the other), 121 a kind and 85 the
relation. With attention, 155 are wrong: 86 in a colour, 34 in a kind, 89 in the
relation (which it does not learn better). ``:beam=3`` trains the same weights (decoding
changes only the evaluation); the beam numbers above re-decode the recorded checkpoint.
"""

import ml_collections

from cnn_jax.train.config import default_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'steps': 6000, 'beam': 1, 'pool': 'flatten', 'attention': False})
  c = default_config('captioning')
  c.task.max_len = 16
  c.task.beam_size = a['beam']
  c.model.name = 'captioner'
  c.model.kwargs = ml_collections.ConfigDict({
      'backbone': 'simple_cnn', 'backbone_kwargs': {'widths': (16, 32, 64)},
      'pool': a['pool'], 'attention': a['attention'], 'embed_dim': 64, 'hidden': 128})
  c.data.name = 'synthetic_captions'
  c.data.image_size = 32
  c.data.num_classes = 4
  c.data.objects_per_image = (1, 2)
  c.data.num_train = 8000
  c.data.num_eval = 500
  c.batch_size = 64
  c.eval_batch_size = 256
  c.num_steps = a['steps']
  c.log_every = 50
  c.eval_every = 2000
  c.checkpoint_every = 2000
  c.optimizer.name = 'adam'
  c.optimizer.lr = 2e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.grad_clip_norm = 5.0
  c.schedule.name = 'cosine'
  c.schedule.warmup_steps = a['steps'] // 30
  c.augment.flip = True           # the captions' left and right are swapped with the pixels
  return c
