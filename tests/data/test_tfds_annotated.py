"""TFDS detection and segmentation sets, read without TensorFlow and without network.

``tfds.testing.mock_data`` gives random records shaped like the real
``voc/2007``, ``coco/2017`` and ``oxford_iiit_pet`` (its random sub-features
come with different lengths and masks with their own sizes, which the reader
tolerates with counted warnings); the expected packed fields are rebuilt from
the mock records themselves. Hand-made records (``as_data_source_fn``) pin the
pet trimap mapping, and a tiny detection set really prepared as ArrayRecord
runs the on-disk path, including reading a builder whose code needs
TensorFlow (as COCO's does) from its prepared files.
"""

import sys
import warnings

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip('tensorflow_datasets')

from cnn_jax.data import tfds_annotated as TA  # noqa: E402
from cnn_jax.data.annotations import IGNORE, Annotated, letterbox  # noqa: E402

S, K = 32, 6


def _load(name, wants, split='train', **kw):
  kw = {'image_size': S, 'max_boxes': K, **kw}
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ds = TA.load_tfds_annotated(name, split, wants=wants, **kw)
  return ds, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def _mock_records(name, n):
  """The records ``load_tfds_annotated`` reads (call inside the same mock_data)."""
  source = tfds.data_source(name, split='train')
  return [source[i] for i in range(n)]


def _expected_boxes(record, flag_key):
  """The spec, restated: normalised -> pixels, clipped, empty boxes dropped."""
  image = record['image']
  h, w = image.shape[:2]
  obj = record['objects']
  n = min(len(obj['bbox']), len(obj['label']))
  boxes = np.clip(obj['bbox'][:n] * [h, w, h, w], 0, [h, w, h, w]).astype(np.float32)
  flags = np.zeros((n,), bool)
  m = min(n, len(obj[flag_key]))
  flags[:m] = obj[flag_key][:m]
  keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  return boxes[keep], obj['label'][:n][keep].astype(np.int32), flags[keep]


def _check_common(ds, n, num_classes):
  assert ds.images.shape == (n, S, S, 3) and ds.images.dtype == np.uint8
  ex = ds.extras
  assert ex['boxes'].shape == (n, K, 4) and ex['boxes'].dtype == np.float32
  assert ((ex['boxes'] >= 0) & (ex['boxes'] <= 1)).all()
  labels = ex['box_labels']
  assert labels.shape == (n, K) and labels.dtype == np.int32
  assert ((labels == -1) | ((labels >= 0) & (labels < num_classes))).all()
  real = labels >= 0
  assert (ex['boxes'][real][:, 2:] > ex['boxes'][real][:, :2]).all()
  assert (ex['boxes'][~real] == 0).all()
  for flag in ('box_crowd', 'box_difficult'):
    assert ex[flag].shape == (n, K) and ex[flag].dtype == bool and not ex[flag][~real].any()
  assert ex['image_id'].dtype == np.int32 and ex['orig_hw'].shape == (n, 2)
  assert ds.labels.dtype == np.int32 and ds.class_names and len(ds.class_names) == num_classes
  assert 'masks' not in ex


def test_mock_voc2007_boxes_and_difficult():
  n = 4
  with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
    ds, warned = _load('voc/2007', ('boxes',))
    records = _mock_records('voc/2007', n)
  _check_common(ds, n, 20)
  assert ds.class_names[:2] == ('aeroplane', 'bicycle')
  np.testing.assert_array_equal(ds.extras['image_id'], np.arange(n))
  assert not ds.extras['box_crowd'].any() and ds.extras['box_difficult'].any()
  # mock boxes are random corners, so many are inverted: one counted warning each.
  assert sum('with no area' in w for w in warned) == 1
  assert sum('different lengths' in w for w in warned) == 1
  for i, r in enumerate(records):
    boxes, labels, difficult = _expected_boxes(r, 'is_difficult')
    want = letterbox(Annotated(r['image'], boxes, labels, image_id=i, difficult=difficult),
                     S, K)
    np.testing.assert_array_equal(ds.images[i], want['image'])
    for key in ('boxes', 'box_labels', 'box_difficult', 'orig_hw', 'image_scale'):
      np.testing.assert_array_equal(ds.extras[key][i], want[key], err_msg=key)


@pytest.fixture
def coco_code_without_tf(monkeypatch):
  # COCO's _info says `tf.int64`, so its builder cannot be made without
  # TensorFlow, even mocked; an int64 stand-in for that one name suffices.
  from tensorflow_datasets.object_detection import coco
  monkeypatch.setattr(coco, 'tf', type('tf', (), {'int64': np.int64}))


def test_mock_coco2017_crowd_and_image_id(coco_code_without_tf):
  n = 3
  with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
    ds, _ = _load('coco/2017', ('boxes',))
    records = _mock_records('coco/2017', n)
  _check_common(ds, n, 80)
  # The 80 names come from the annotation files at preparation; the code has none.
  assert ds.class_names == tuple(str(i) for i in range(80))
  np.testing.assert_array_equal(ds.extras['image_id'], [r['image/id'] for r in records])
  assert not ds.extras['box_difficult'].any()
  for i, r in enumerate(records):
    boxes, labels, crowd = _expected_boxes(r, 'is_crowd')
    want = letterbox(Annotated(r['image'], boxes, labels, crowd=crowd), S, K)
    for key in ('boxes', 'box_labels', 'box_crowd'):
      np.testing.assert_array_equal(ds.extras[key][i], want[key], err_msg=key)
  assert 'tensorflow' not in sys.modules


def test_coco_without_tf_and_not_prepared_says_how(tmp_path):
  # The real (unpatched) COCO code fails on `tf.int64`: the reader falls back
  # to the prepared files, finds none and says how to prepare them.
  with pytest.raises(FileNotFoundError, match=r"'coco/2017' is not prepared.*tfds build "
                     'coco/2017'):
    TA.load_tfds_annotated('coco/2017', 'train', data_dir=tmp_path, wants=('boxes',),
                           image_size=S, max_boxes=K)


def _pet_mapping(trimap):
  return np.vectorize(lambda v: {1: 1, 2: 0, 3: IGNORE}.get(int(v), IGNORE))(trimap)


def test_mock_pet_trimap_mapped_exactly():
  n = 3
  with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
    ds, warned = _load('oxford_iiit_pet', ('masks',))
    records = _mock_records('oxford_iiit_pet', n)
  assert ds.class_names == ('pet',)
  masks = ds.extras['masks']
  assert masks.shape == (n, S, S) and masks.dtype == np.int32
  assert set(np.unique(masks)) <= {0, 1, IGNORE}
  assert (ds.extras['box_labels'] == -1).all() and (ds.labels == 0).all()
  # mock masks get their own random size: resized to the image, one warning.
  assert sum('resized' in w for w in warned) == 1
  for i, r in enumerate(records):
    h, w = r['image'].shape[:2]
    mask = _pet_mapping(r['segmentation_mask'][..., 0]).astype(np.uint8)
    mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))
    want = letterbox(Annotated(r['image'], np.zeros((0, 4), np.float32),
                               np.zeros((0,), np.int32), mask=mask), S, K)
    np.testing.assert_array_equal(masks[i], want['masks'])
    np.testing.assert_array_equal(ds.images[i], want['image'])


def test_pet_trimap_table_on_known_record():
  trimap = np.array([[1, 2, 3, 0], [2, 2, 1, 7]], np.uint8)[..., None]
  image = np.full((2, 4, 3), 9, np.uint8)

  def as_data_source(self, split, **kwargs):
    del self, split, kwargs
    return [{'image': image, 'segmentation_mask': trimap, 'label': 0, 'species': 0,
             'file_name': 'a.jpg', 'head_bbox': np.zeros(4, np.float32)}]

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    ds, warned = _load('oxford_iiit_pet', ('masks',), image_size=4, channels=1)
  assert not warned and ds.images.shape == (1, 4, 4, 1)
  np.testing.assert_array_equal(ds.extras['masks'][0], [[1, 0, IGNORE, IGNORE],
                                                        [0, 0, 1, IGNORE],
                                                        [IGNORE] * 4, [IGNORE] * 4])


def test_missing_features_name_dataset_and_fix():
  with tfds.testing.mock_data(num_examples=1, policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.raises(ValueError, match=r"'voc/2007' has no segmentation mask \(features: "
                       r".*'objects'.*oxford_iiit_pet"):
      TA.load_tfds_annotated('voc/2007', 'train', wants=('masks',), image_size=S,
                             max_boxes=K)
    with pytest.raises(ValueError, match=r"'oxford_iiit_pet' has no boxes \(no 'objects' "
                       r".*'segmentation_mask'.*voc/2007"):
      TA.load_tfds_annotated('oxford_iiit_pet', 'train', wants=('masks', 'boxes'),
                             image_size=S, max_boxes=K)
    with pytest.raises(ValueError, match='only boxes and masks'):
      TA.load_tfds_annotated('voc/2007', 'train', wants=('keypoints',), image_size=S,
                             max_boxes=K)


class CnnJaxTinyDetection(tfds.core.GeneratorBasedBuilder):
  """Two 10x20 images: known boxes (one of no area) and a label-valued mask.

  ``Tensor`` image (zlib: variable size) because encoding an ``Image``
  feature needs TensorFlow.
  """
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding='zlib'),
        'image/id': np.int64,
        'segmentation_mask': tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8,
                                                  encoding='zlib'),
        'objects': tfds.features.Sequence({
            'bbox': tfds.features.BBoxFeature(),
            'label': tfds.features.ClassLabel(names=['cat', 'dog']),
            'is_crowd': np.bool_})}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    mask = np.zeros((10, 20, 1), np.uint8)
    mask[:5, :10] = 2
    mask[9] = IGNORE
    for i in range(2):
      yield i, {'image': np.full((10, 20, 3), 50 * i, np.uint8), 'image/id': 100 + i,
                'segmentation_mask': mask,
                'objects': {'bbox': np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0],
                                              [0.5, 0.5, 0.5, 0.9]], np.float32),
                            'label': [1, 0, 1], 'is_crowd': [False, True, False]}}


@pytest.fixture(scope='module')
def prepared_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  CnnJaxTinyDetection(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
  return data_dir


def test_prepared_boxes_exact(prepared_dir):
  ds, warned = _load('cnn_jax_tiny_detection', ('boxes',), data_dir=prepared_dir,
                     image_size=20, max_boxes=3)
  assert ds.class_names == ('cat', 'dog')
  order = np.argsort(ds.extras['image_id'])
  np.testing.assert_array_equal(ds.extras['image_id'][order], [100, 101])
  # 10x20 image, canvas 20 (scale 1): the full box first (largest), then
  # [0.1, 0.2, 0.5, 0.6] * (10, 20) / 20; the zero-height box is skipped.
  np.testing.assert_allclose(ds.extras['boxes'][0], [[0, 0, 0.5, 1], [0.05, 0.2, 0.25, 0.6],
                                                     [0, 0, 0, 0]], atol=1e-6)
  np.testing.assert_array_equal(ds.extras['box_labels'], [[0, 1, -1]] * 2)
  np.testing.assert_array_equal(ds.extras['box_crowd'], [[True, False, False]] * 2)
  assert warned == ["TFDS cnn_jax_tiny_detection['train']: 2 boxes with no area inside the "
                    'image were skipped.']


def test_prepared_generic_mask_and_code_needing_tf(prepared_dir, monkeypatch):
  def no_tf(self):
    raise ModuleNotFoundError("No module named 'tensorflow'")

  # As COCO's code does without TensorFlow: the builder then comes from the files.
  monkeypatch.setattr(CnnJaxTinyDetection, '_info', no_tf)
  ds, _ = _load('cnn_jax_tiny_detection', ('masks',), data_dir=prepared_dir, image_size=20)
  # Generic masks are labels already: 0 background, 2 = class 1, 255 void.
  assert ds.class_names == ('0', '1')
  mask = ds.extras['masks'][0]
  assert (mask[:5, :10] == 2).all() and (mask[9, :] == IGNORE).all()
  assert (mask[10:] == IGNORE).all() and (mask[5:9, 10:] == 0).all()
  assert ds.extras['boxes'].shape == (2, K, 4)  # boxes come along when present
  assert 'tensorflow' not in sys.modules
