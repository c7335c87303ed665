"""Recognizers: LRCN, PreRNN, two-stream/TSN, ST-ResNet, behind one flat registry."""

from vidrec.models import captioner, detector, lrcn, prernn, segnet, st_resnet, two_stream  # noqa: F401 (registers)
from vidrec.models.backbones import Backbone
from vidrec.models.layers import num_steps
from vidrec.models.lrcn import LRCN, SingleFrame
from vidrec.models.outputs import classification_loss, video_probs
from vidrec.models.prernn import PreRNN, RecurrentLayer, convert_to_recurrent
from vidrec.models.registry import get_model, list_models, register_model
from vidrec.models.st_resnet import STResNet, TemporalConv
from vidrec.models.two_stream import TSN, TwoStream

__all__ = [
    "LRCN", "TSN", "Backbone", "PreRNN", "RecurrentLayer", "STResNet", "SingleFrame", "TemporalConv",
    "TwoStream", "classification_loss", "convert_to_recurrent", "get_model", "list_models", "num_steps",
    "register_model", "video_probs",
]  # fmt: skip
