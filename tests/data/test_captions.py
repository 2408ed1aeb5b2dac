"""Captions: tokenizer, vocabulary, the synthetic scenes' grammar, the COCO captions reader."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from cnn_jax.data import captions as C
from cnn_jax.data import synthetic


def test_tokenize_lowercases_and_splits_on_non_letters():
  assert C.tokenize("A man's bike, 2 dogs!\nCafé_au-lait") == [
      'a', 'man', 's', 'bike', 'dogs', 'café', 'au', 'lait']
  assert C.tokenize(' ,.; 42 ') == []


def test_vocabulary_build_encode_decode():
  caps = [C.tokenize(s) for s in ('a red disc', 'a blue disc', 'a disc', 'one odd word')]
  v = C.Vocabulary.build(caps, min_count=2)
  assert v.words == ('<pad>', '<bos>', '<eos>', '<unk>', 'a', 'disc')  # 3 x each, then rare ones
  assert (v.id('<pad>'), v.id('<bos>'), v.id('<eos>'), v.id('<unk>')) == (0, 1, 2, 3)
  full = C.Vocabulary.build(caps)
  assert full.words[4:] == ('a', 'disc', 'blue', 'odd', 'one', 'red', 'word')  # count, then a-z
  ids, cut = full.encode(['a', 'green', 'disc'], 6)
  np.testing.assert_array_equal(ids, [1, 4, 3, 5, 2, 0])  # green is <unk>
  assert not cut and full.decode(ids) == ['a', '<unk>', 'disc']
  ids, cut = full.encode(['a', 'red', 'disc', 'a', 'disc'], 5)  # 5 words, room for 3
  np.testing.assert_array_equal(ids, [1, 4, 9, 5, 2])
  assert cut and full.decode([1, 4, 0, 5]) == ['a', 'disc']  # pads skipped, no eos needed
  tokens, truncated = full.encode_references(
      np.array([['a red disc', ''], ['one odd word a disc a', 'a disc']], object), 5)
  assert tokens.shape == (2, 2, 5) and truncated == 1
  np.testing.assert_array_equal(tokens[0, 1], 0)  # an absent reference: all <pad>
  with pytest.raises(ValueError, match='max_len must be at least 3'):
    full.encode(['a'], 2)
  with pytest.raises(ValueError, match='starts with'):
    C.Vocabulary(['a', 'b'])


def test_colour_names_and_relations():
  assert [C.colour_name(c) for c in [(250, 10, 5), (10, 20, 240), (20, 200, 20), (128, 128, 128),
                                     (250, 250, 250), (10, 10, 10), (250, 240, 10),
                                     (120, 60, 15), (255, 140, 0)]] == [
      'red', 'blue', 'green', 'grey', 'white', 'black', 'yellow', 'brown', 'orange']
  a, below, right = (.1, .1, .3, .3), (.6, .15, .8, .35), (.12, .6, .32, .8)
  assert C.relation(a, below) == 'above' and C.relation(below, a) == 'below'
  assert C.relation(a, right) == 'to the left of' and C.relation(right, a) == 'to the right of'
  boxes = np.array([a, right], np.float32)
  assert C.describe_scene(boxes, ['disc', 'hbar'], ['red', 'blue']) == [
      'a red disc to the left of a blue horizontal bar',
      'a blue horizontal bar to the right of a red disc']
  assert C.describe_scene(boxes[::-1], ['disc', 'ring'], ['orange', 'red']) == [
      'an orange disc to the right of a red ring', 'a red ring to the left of an orange disc']
  assert C.describe_scene(np.array([[0, 0, .6, .4]]), ['ring'], ['pink']) == [
      'a large pink ring', 'there is a large pink ring']
  with pytest.raises(ValueError, match='1 to 2 objects'):
    C.describe_scene(np.zeros((3, 4)), ['disc'] * 3, ['red'] * 3)


def test_synthetic_captions_are_deterministic_and_describe_the_scene():
  ds = C.load_synthetic_captions('train', num_examples=40, image_size=32, num_classes=4, seed=3)
  again = C.load_synthetic_captions('train', num_examples=40, image_size=32, num_classes=4,
                                    seed=3)
  np.testing.assert_array_equal(ds.extras['captions'], again.extras['captions'])
  np.testing.assert_array_equal(ds.images, again.images)
  other = C.load_synthetic_captions('test', num_examples=40, image_size=32, num_classes=4, seed=3)
  assert not np.array_equal(ds.images, other.images)
  scenes = synthetic.render_scenes(40, image_size=32, num_classes=4, objects_per_image=(1, 2),
                                   seed=6, instance_masks=True)  # train of seed 3: 2 * 3
  np.testing.assert_array_equal(scenes['images'], ds.images)
  counts = {1: 0, 2: 0}
  for i in range(40):
    first, second = ds.extras['captions'][i]
    words = first.split()
    slots = np.flatnonzero(scenes['box_labels'][i] >= 0)
    kinds = [synthetic.SHAPES[scenes['box_labels'][i, k]] for k in slots]
    # Each object's kind is named, after the colour of its own visible pixels.
    for k, kind in zip(slots, kinds):
      pixels = scenes['images'][i][scenes['instance_masks'][i, k]]
      colour = C.colour_name(np.median(pixels, axis=0))
      assert f'{colour} {kind}' in first and f'{colour} {kind}' in second
    assert sum(w in C.COLOURS for w in words) == len(slots)
    counts[len(slots)] += 1
    if len(slots) == 1:
      assert words[1] in ('small', 'large') and second == 'there is ' + first
    else:  # the same relation, said from either object
      rel = C.relation(*scenes['boxes'][i, slots])
      assert f' {rel} ' in first and f' {C.RELATIONS[rel]} ' in second
      assert first.startswith(C.with_article(f'{words[1]} {kinds[0]}'))
  assert counts[1] > 5 and counts[2] > 5
  assert ds.extras['captions'].shape == (40, 2)
  assert ds.extras['image_id'].tolist() == list(range(40))
  with pytest.raises(ValueError, match='1 to 2 objects per image'):
    C.load_synthetic_captions('train', num_examples=4, objects_per_image=(1, 3))


# ----------------------------------------------------------------------------- COCO captions

def _write_coco(root, captions=None, images=None, split='val'):
  (root / split).mkdir(parents=True, exist_ok=True)
  for name, size in (('a.png', (12, 20)), ('b.jpg', (16, 16)), ('c.png', (10, 10))):
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(root / split / name)
  spec = {
      'images': images or [{'id': 5, 'file_name': 'a.png', 'height': 12, 'width': 20},
                           {'id': 9, 'file_name': 'b.jpg'},
                           {'id': 11, 'file_name': 'c.png'}],
      'annotations': captions or [
          {'id': 1, 'image_id': 9, 'caption': 'A dog on a BED.'},
          {'id': 2, 'image_id': 5, 'caption': 'Two cats'},
          {'id': 3, 'image_id': 9, 'caption': 'a sleeping dog'},
          {'id': 4, 'image_id': 9, 'caption': 'dog, bed'}]}
  path = root / 'annotations' / f'captions_{split}.json'
  path.parent.mkdir(exist_ok=True)
  path.write_text(json.dumps(spec))
  return path


def test_coco_captions_reader(tmp_path):
  _write_coco(tmp_path)
  with pytest.warns(UserWarning, match=r'1 image\(s\) of .* have no caption .*ids \[11\]'):
    ds = C.load_coco_captions(tmp_path, 'val', image_size=8)
  assert ds.images.shape == (2, 8, 8, 3) and ds.images.dtype == np.uint8
  assert ds.extras['image_id'].tolist() == [5, 9]  # the images' order in the file
  assert ds.extras['captions'].tolist() == [['Two cats', '', ''],
                                            ['A dog on a BED.', 'a sleeping dog', 'dog, bed']]
  assert abs(int(ds.images.mean()) - 90) <= 1


@pytest.mark.parametrize('case,match', [
    ('empty', r'image id 9 has an empty caption .* \(annotation 7\)'),
    ('unknown_image', 'annotation 1 refers to image_id 77'),
    ('no_caption_key', "annotation 1 has no 'caption' field"),
    ('latin1', r'captions_val.json is not UTF-8 text'),
    ('not_json', r'captions_val.json is not valid JSON'),
    ('no_images', "key 'images' is missing"),
])
def test_coco_captions_errors_name_the_file_and_entry(tmp_path, case, match):
  if case == 'empty':
    path = _write_coco(tmp_path, captions=[{'id': 7, 'image_id': 9, 'caption': ' ,. '}])
  elif case == 'unknown_image':
    path = _write_coco(tmp_path, captions=[{'id': 1, 'image_id': 77, 'caption': 'a dog'}])
  elif case == 'no_caption_key':
    path = _write_coco(tmp_path, captions=[{'id': 1, 'image_id': 9}])
  else:
    path = _write_coco(tmp_path)
    if case == 'latin1':
      path.write_bytes(path.read_text().replace('Two cats', 'Deux chats très').encode('latin-1'))
    elif case == 'not_json':
      path.write_text('{"images": [')
    else:
      path.write_text(json.dumps({'annotations': []}))
  with pytest.raises(ValueError, match=match):
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      C.load_coco_captions(tmp_path, 'val', image_size=8)


def test_coco_captions_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='captions_val.json not found'):
    C.load_coco_captions(tmp_path, 'val', image_size=8)


def test_coco_captions_through_the_config(tmp_path):
  from cnn_jax.data.build import load_split
  from cnn_jax.train import config as config_lib
  _write_coco(tmp_path)
  c = config_lib.default_config('captioning')
  c.data.name, c.data.image_size = 'coco_captions', 8
  with pytest.raises(ValueError, match='data.name=coco_captions needs data.root=DIR, a COCO '
                                       'captions dataset'):
    config_lib.validate(c)
  c.data.root, c.data.train_split = str(tmp_path), 'val'
  config_lib.validate(c)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ds = load_split(c.data, 'val')
  assert ds.extras['image_id'].tolist() == [5, 9] and ds.images.shape == (2, 8, 8, 3)
