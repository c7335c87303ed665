"""Video and frame-folder input/output: decoding (PyAV), metadata, frame folders, writing videos."""

from vidrec.io.errors import VideoDamageWarning, VideoDecodeError
from vidrec.io.frames import count_frames, read_flow_folder, read_rgb_folder
from vidrec.io.video import VideoMeta, VideoReader, probe, read_frames
from vidrec.io.writer import VideoWriter, write_video

__all__ = [
    "VideoDamageWarning",
    "VideoDecodeError",
    "VideoMeta",
    "VideoReader",
    "VideoWriter",
    "count_frames",
    "probe",
    "read_flow_folder",
    "read_frames",
    "read_rgb_folder",
    "write_video",
]
