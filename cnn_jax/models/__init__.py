"""The model zoo: Linen models built from cnn_jax.nn, and one registry.

    model = get_model('cifar_resnet56', conv_impl='einsum', dtype=jnp.bfloat16)
"""

from cnn_jax.models.alexnet import AlexNet
from cnn_jax.models.embedding import Embedding, SiameseHead
from cnn_jax.models.fcn import FCN
from cnn_jax.models.functional import Functional
from cnn_jax.models.googlenet import GoogLeNet
from cnn_jax.models.lenet import LeNet5
from cnn_jax.models.registry import get_model, list_models, model_fields, register
from cnn_jax.models.resnet import CifarResNet, ResNet
from cnn_jax.models.simple import SimpleCNN
from cnn_jax.models.speednet import SpeedNet
from cnn_jax.models.text_cnn import TextCNN
from cnn_jax.models.introspect import (LayerRow, count_multiplies, format_summary, summary,
                                    xla_flops)
from cnn_jax.models.vgg import VGG
from cnn_jax.models.yolo import YOLO
from cnn_jax.models.weights import export_flat, load_flat, load_into, load_pretrained
