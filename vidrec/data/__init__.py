"""Data: samplers, records and list-file readers, the video dataset, clip transforms, synthetic videos."""

from vidrec.data.dataset import MODALITIES, SkippedItem, VideoDataset, collate_skip, lrcn_flow_image
from vidrec.data.records import (
    VideoRecord,
    class_folders,
    hmdb51_split,
    read_class_names,
    read_list_file,
    ucf101_split,
    video_id_of,
)
from vidrec.data.samplers import (
    ClipSample,
    Sampler,
    build_sampler,
    dense_clip,
    test_clips,
    test_frames,
    tsn_segments,
    uniform_frames,
)
from vidrec.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from vidrec.data.synthetic import make_synthetic_dataset
from vidrec.data.transforms import Flow3Video, FlowVideo, test_transform, train_transform

__all__ = [
    "MODALITIES",
    "SYNTHETIC_CLASSES",
    "ClipSample",
    "Flow3Video",
    "FlowVideo",
    "Sampler",
    "SkippedItem",
    "VideoDataset",
    "VideoRecord",
    "build_sampler",
    "class_folders",
    "collate_skip",
    "dense_clip",
    "hmdb51_split",
    "lrcn_flow_image",
    "make_synthetic_dataset",
    "read_class_names",
    "read_list_file",
    "test_clips",
    "test_frames",
    "test_transform",
    "train_transform",
    "tsn_segments",
    "ucf101_split",
    "uniform_frames",
    "video_id_of",
]
