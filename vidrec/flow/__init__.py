"""Optical-flow extraction: OpenCV TV-L1 / DIS / Farneback and torchvision RAFT, uint8 quantisation,
per-video stores (lossless FFV1 `.flow.mkv`, the default; `.flow.npy`; denseflow JPEG folders)."""

from vidrec.flow.estimators import DIS_TUNED, METHODS, FlowEstimator, compute_flow
from vidrec.flow.formats import read_flo, write_flo
from vidrec.flow.quantize import DEFAULT_BOUND, dequantize, max_quantization_error, quantize, to_lrcn_image
from vidrec.flow.raft_weights import RaftWeightsMissing
from vidrec.flow.storage import (
    DEFAULT_FORMAT,
    FORMATS,
    find_flow,
    flow_meta,
    flow_video,
    is_complete,
    load_flow,
    num_flow_frames,
    save_flow,
    save_flow_denseflow,
)

__all__ = [
    "DEFAULT_BOUND",
    "DEFAULT_FORMAT",
    "DIS_TUNED",
    "FORMATS",
    "METHODS",
    "FlowEstimator",
    "RaftWeightsMissing",
    "compute_flow",
    "dequantize",
    "find_flow",
    "flow_meta",
    "flow_video",
    "is_complete",
    "load_flow",
    "max_quantization_error",
    "num_flow_frames",
    "quantize",
    "read_flo",
    "save_flow",
    "save_flow_denseflow",
    "to_lrcn_image",
    "write_flo",
]
