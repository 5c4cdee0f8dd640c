"""Keras App Zoo model builders: `zoo.build(name, **options)` returns an uncompiled keras.Model.

Public names only here; apps use nothing else of the zoo.
"""

from zoo import (  # noqa: F401
    cnn,
    detection,
    efficientnet_lite,
    generative,
    language,
    mlp,
    rnn,
    segmentation,
    seq2seq,
    text,
    transfer,
)
from zoo.backbones import BackboneSource, image_source, longest_in_tokens, text_source
from zoo.detection import CenterNetLoss, decode_detections
from zoo.efficientnet_lite import ImageNetClassifier
from zoo.finetune import fine_tunable_variables, unfreeze_top
from zoo.generative import GAN, VAE
from zoo.hub import save_hub_module
from zoo.language import TextGenerator, filter_logits, generate, sampler
from zoo.outputs import GRADCAM_LAYER, OUTPUT_LAYERS
from zoo.registry import ModelEntry, build, describe, get_entry, list_models, register_model
from zoo.rnn import AddLastValue, RelativeToLast
from zoo.segmentation import CrossentropyDiceLoss
from zoo.seq2seq import Translator, greedy_decode
from zoo.transfer import BackboneModel, TransferClassifier

__all__ = ["GAN", "GRADCAM_LAYER", "OUTPUT_LAYERS", "VAE", "AddLastValue", "BackboneModel", "BackboneSource",
           "CenterNetLoss", "CrossentropyDiceLoss", "ImageNetClassifier", "ModelEntry", "RelativeToLast",
           "TextGenerator", "TransferClassifier", "Translator", "build", "decode_detections", "describe",
           "filter_logits", "generate", "sampler",
           "fine_tunable_variables", "get_entry", "greedy_decode", "image_source", "list_models",
           "longest_in_tokens",
           "register_model", "save_hub_module", "text_source", "unfreeze_top"]
