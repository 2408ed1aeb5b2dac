"""Pure jnp/lax functions for convolutional networks: no Flax, no state, no I/O.

(One exception, on request only: ``conv_impl='auto'`` measures and caches its
per-shape choice on disk, in :mod:`cnn_jax.ops.conv_auto`.)

Import the submodules (``from cnn_jax.ops import conv``) or use the flat names
re-exported here (``cnn_jax.ops.conv2d``).
"""

from cnn_jax.ops.boxes import (average_precision, box_iou, centers_to_corners,
                               corners_to_centers, detect, nms, yolo_decode, yolo_encode)
from cnn_jax.ops.conv import (conv1d, conv2d, conv2d_einsum, conv2d_winograd, conv_transpose2d,
                              convolve2d, extract_patches, flip_kernel)
from cnn_jax.ops.cost import (ConvCost, conv_cost, conv_multiplies, conv_params,
                              dense_multiplies, dense_params)
from cnn_jax.ops.filters import EDGE_KINDS, edge_detect, edge_kernel
from cnn_jax.ops.losses import (batch_hard_indices, batch_triplet_loss, content_loss,
                                contrastive_loss, gram_matrix, pairwise_features,
                                pairwise_sq_distances, sigmoid_binary_cross_entropy,
                                softmax_cross_entropy, style_layer_loss, style_loss,
                                total_variation, triplet_loss, yolo_loss)
from cnn_jax.ops.metrics import (accuracy, confusion_matrix, iou_from_confusion_matrix,
                                 mean_iou, pixel_accuracy, roc_auc, top_k_accuracy,
                                 best_threshold, verification_accuracy)
from cnn_jax.ops.pool import (adaptive_avg_pool, avg_pool, avg_pool1d, global_avg_pool,
                              global_max_pool, lp_pool, masked_max_over_time,
                              masked_mean_over_time, max_pool, max_pool1d)
from cnn_jax.ops.rnn import (gru_cell, gru_zero_carry, init_gru, init_lstm, lstm_cell,
                             lstm_zero_carry, scan_rnn)
from cnn_jax.ops.shapes import conv_output_size, normalize_padding, same_padding
