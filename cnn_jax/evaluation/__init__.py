"""Host-side evaluation over a whole data set: COCO metrics (pycocotools), BLEU and reports.

VOC all-point AP lives with the box ops (:func:`cnn_jax.ops.boxes.average_precision`,
:func:`cnn_jax.ops.boxes.precision_recall`); this package adds the COCO
reference metrics (:mod:`cnn_jax.evaluation.coco`) and tables and plots of
either (:mod:`cnn_jax.evaluation.report`, matplotlib imported only when plotting),
and corpus BLEU for generated text such as captions (:mod:`cnn_jax.evaluation.bleu`).
"""

from cnn_jax.evaluation.bleu import corpus_bleu
from cnn_jax.evaluation.coco import (SUMMARY_KEYS, boxes_to_pixels, coco_evaluate,
                                     coco_evaluate_rows, detections_to_pixels, encode_masks,
                                     to_coco_gt, to_coco_results)
from cnn_jax.evaluation.report import per_class_table, plot_pr_curves

__all__ = ['SUMMARY_KEYS', 'boxes_to_pixels', 'coco_evaluate', 'coco_evaluate_rows',
           'corpus_bleu', 'detections_to_pixels', 'encode_masks', 'per_class_table',
           'plot_pr_curves', 'to_coco_gt', 'to_coco_results']
