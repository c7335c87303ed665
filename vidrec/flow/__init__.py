"""Optical-flow extraction: OpenCV TV-L1 / DIS / Farneback and torchvision RAFT, uint8 quantisation,
per-video `.flow.npy` files and denseflow JPEG folders."""

from vidrec.flow.estimators import DIS_TUNED, METHODS, FlowEstimator, RaftWeightsMissing, compute_flow
from vidrec.flow.formats import read_flo, write_flo
from vidrec.flow.quantize import DEFAULT_BOUND, dequantize, max_quantization_error, quantize, to_lrcn_image
from vidrec.flow.storage import flow_meta, flow_video, is_complete, load_flow, save_flow, save_flow_denseflow

__all__ = [
    "DEFAULT_BOUND",
    "DIS_TUNED",
    "METHODS",
    "FlowEstimator",
    "RaftWeightsMissing",
    "compute_flow",
    "dequantize",
    "flow_meta",
    "flow_video",
    "is_complete",
    "load_flow",
    "max_quantization_error",
    "quantize",
    "read_flo",
    "save_flow",
    "save_flow_denseflow",
    "to_lrcn_image",
    "write_flo",
]
