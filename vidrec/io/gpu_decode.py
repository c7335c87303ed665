"""Decoding on the GPU with torchcodec (`data.decode_device=cuda`), behind `VideoReader`'s interface.

A fast accelerator trains at tens of thousands of frames a second, while one CPU core's loader decodes,
resizes and crops about a thousand (`benchmarks/train_throughput.py`): the loader starves it.
`TorchcodecReader` decodes on NVIDIA's hardware decoder (torchcodec's ``VideoDecoder(device="cuda")``) and
resizes on the GPU, so the frames never cross the PCIe bus as pixels and no CPU core decodes them.

Exactness: on the CPU, torchcodec's frames at the native size equal PyAV's (`VideoReader`) bit for bit
(tests/io/test_gpu_decode.py). Resizing differs by construction: `VideoReader` resizes in libswscale
("AREA"), this reader with torch's antialiased bilinear filter, a mean absolute difference of about 1.3
grey levels at 240 -> 128 px (at most `RESIZE_TOLERANCE`). The CUDA decoder converts YUV to RGB with its
own kernels; `benchmarks/gpu.py` measures its difference to the CPU decoder on the GPU it runs on and
checks it against `CUDA_TOLERANCE`. Unlike `VideoReader`, it returns frames as stored (no display-matrix
rotation) and reports damaged files as `VideoDecodeError` without reading around the damage.

torchcodec is optional (``pip install 'vidrec[gpu]'``) and needs FFmpeg's shared libraries
(``apt-get install -y ffmpeg``); `cuda_decoding_problem` says in one line what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vidrec.io.errors import VideoDecodeError
from vidrec.io.video import output_size

__all__ = ["CUDA_TOLERANCE", "RESIZE_TOLERANCE", "TorchcodecReader", "cuda_decoding_problem"]

# Mean absolute difference (grey levels, 0-255) allowed between this reader and `VideoReader`.
RESIZE_TOLERANCE = 2.0  # resized frames: torch antialiased bilinear vs libswscale AREA
CUDA_TOLERANCE = 3.0  # NVDEC + CUDA colour conversion vs the CPU decoder, native size

INSTALL = (
    "pip install 'vidrec[gpu]' (torchcodec) and FFmpeg's shared libraries (apt-get install -y ffmpeg), "
    "or set data.decode_device=cpu"
)


def torchcodec_problem() -> str | None:
    """Why torchcodec's decoder cannot be used here (one line), or None when it loads."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401 - loads FFmpeg's libraries
    except ImportError:
        return f"torchcodec is not installed: {INSTALL}"
    except Exception as err:  # noqa: BLE001 - torchcodec raises OSError/RuntimeError when FFmpeg is missing
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"torchcodec cannot load FFmpeg ({first}): {INSTALL}"
    return None


def cuda_decoding_problem() -> str | None:
    """Why `decode_device="cuda"` cannot run on this machine (one line), or None when it can."""
    if not torch.cuda.is_available():
        return "torch.cuda is not available (no NVIDIA GPU or a CPU-only torch); use data.decode_device=cpu"
    return torchcodec_problem()


class TorchcodecReader:
    """Random access to the frames of one video, decoded by torchcodec on `device`.

    Args:
        path: the video file.
        size: output size: `(H, W)`, an int short side (aspect kept), or None for native.
        device: "cuda" (NVDEC) or "cpu" (FFmpeg's software decoders, as PyAV).
        threads: FFmpeg threads of the CPU decoder.

    Raises:
        VideoDecodeError: the file cannot be opened or holds no frames.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        size: int | tuple[int, int] | None = None,
        device: str | torch.device = "cuda",
        threads: int = 1,
    ) -> None:
        from torchcodec.decoders import VideoDecoder

        self.path, self.device = os.fspath(path), torch.device(device)
        if not os.path.isfile(self.path):
            raise VideoDecodeError(self.path, "file not found")
        try:  # exact seek mode: frame i is the i-th frame a full decode gives, as VideoReader's
            self._decoder = VideoDecoder(self.path, device=str(self.device), num_ffmpeg_threads=threads)
        except (RuntimeError, ValueError) as err:
            raise VideoDecodeError(self.path, f"torchcodec cannot open it: {err}") from err
        meta = self._decoder.metadata
        if len(self._decoder) == 0:
            raise VideoDecodeError(self.path, "holds no frames")
        self.size = output_size(size, height=meta.height, width=meta.width)

    def __len__(self) -> int:
        return len(self._decoder)

    def __enter__(self) -> TorchcodecReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the decoder (torchcodec frees it with the object)."""
        self._decoder = None

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 RGB `(N, 3, H, W)` on `device`, in the order asked (repeats allowed)."""
        wanted = [int(i) for i in indices]
        bad = [i for i in wanted if not 0 <= i < len(self)]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad} outside [0, {len(self)})")
        if not wanted:
            return torch.zeros((0, 3, *self.size), dtype=torch.uint8, device=self.device)
        unique = sorted(set(wanted))
        try:
            frames = self._decoder.get_frames_at(unique).data  # (U, 3, H0, W0) uint8 on device
        except RuntimeError as err:
            raise VideoDecodeError(self.path, f"torchcodec cannot decode frames {unique}: {err}") from err
        frames = resize_uint8(frames, self.size)
        where = {i: k for k, i in enumerate(unique)}
        return frames[[where[i] for i in wanted]]


def resize_uint8(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 `(N, 3, H, W)` resized to `size` (antialiased bilinear, rounded), where it lives."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    x = F.interpolate(frames.float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)
