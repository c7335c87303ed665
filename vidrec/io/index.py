"""A demux-only frame index: every packet of a video stream, its pts and keyframe flag.

Reading packets costs a small fraction of decoding them, so a reader builds this index once and then
knows, without decoding, how many frames the file holds, which packet shows which frame, and where
the nearest keyframe before any frame is. The packets themselves are kept in memory when the stream
is small (a UCF101 clip is about half a megabyte), so jumping to a keyframe is a list lookup instead
of a demuxer seek; larger streams are re-read with seeks.

Frames are numbered as a player shows them: packets the demuxer marks "discard" (the pre-roll before
an MP4/MOV edit list's start, e.g. a clip cut with `ffmpeg -ss T -c copy`) are kept for decoding,
since later frames reference them, but are not frames of the video.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

__all__ = ["MAX_CACHED_BYTES", "FrameIndex", "build_index"]

MAX_CACHED_BYTES = 256 * 2**20  # streams up to this size keep their packets in memory


@dataclass
class FrameIndex:
    """Packets of one video stream in decode order, and how they map to displayed frames.

    Attributes:
        packets: the stream's non-empty packets in decode order, or None when the stream is too large
            to keep in memory (`MAX_CACHED_BYTES`).
        pts: `(P,)` int64 presentation timestamp of each packet (decode order).
        order: `(N,)` packet position of each displayed frame: frame `i` is `packets[order[i]]`.
            N <= P: packets the demuxer marks "discard" (edit-list pre-roll) show no frame.
        key_pts: `(K,)` pts of the keyframes, increasing.
        key_pos: `(K,)` packet positions of those keyframes.
        by_pts: True when timestamps identify frames (unique pts that the decoder passes through).
            False for e.g. AVI files with B-frames, whose container stores no presentation times:
            frames are then identified by counting decoder outputs from the start of the file.
        truncated: the demuxer stopped on an error or a corrupt packet before the end of the file.
        first_packet: `(pts, is_keyframe)` of the first packet, to recognise it after a rewind
            (some demuxers report other dts after a seek).
        stop_reason: why the demuxer stopped early ("" when it read the stream to its end).
    """

    packets: list[av.Packet] | None
    pts: np.ndarray
    order: np.ndarray
    key_pts: np.ndarray
    key_pos: np.ndarray
    by_pts: bool
    truncated: bool
    first_packet: tuple
    stop_reason: str = ""

    def __len__(self) -> int:
        """Displayed frames (not packets)."""
        return len(self.order)

    @property
    def num_packets(self) -> int:
        """Packets in decode order, shown or not."""
        return len(self.pts)

    def position_of(self, pts: int | None) -> int | None:
        """Decode-order position of the packet with this pts (None if unknown)."""
        if not hasattr(self, "_positions"):
            self._positions = {int(t): i for i, t in enumerate(self.pts)}
        return self._positions.get(pts)

    def frame_pts(self, i: int) -> int:
        """Presentation timestamp of displayed frame `i`."""
        return int(self.pts[self.order[i]])

    def key_position(self, i: int) -> int:
        """Packet position of the last keyframe whose pts is at or before frame `i`'s (0 if none)."""
        j = int(np.searchsorted(self.key_pts, self.frame_pts(i), side="right")) - 1
        return int(self.key_pos[j]) if j >= 0 else 0


def stream_packets(container: av.container.InputContainer, stream: av.VideoStream):
    """The demuxer's non-empty packets of `stream`, ending before the first corrupt (truncated) one."""
    for packet in container.demux(stream):
        if packet.size == 0:  # the end-of-stream flush packet
            continue
        if packet.is_corrupt:
            return
        yield packet


def build_index(
    container: av.container.InputContainer, stream: av.VideoStream, *, max_cached_bytes: int | None = None
) -> FrameIndex:
    """Read every packet of `stream` (no decoding) and index them.

    A demuxer error after some packets (a truncated file) ends the index there; the caller decides
    what an empty index means. Errors before any packet propagate.
    """
    limit = MAX_CACHED_BYTES if max_cached_bytes is None else max_cached_bytes
    info, packets, size, stop = [], [], 0, ""
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the end-of-stream flush packet
                continue
            if packet.is_corrupt:  # a packet cut short: the file ends inside it
                stop = f"the data of frame packet {len(info) + 1} is cut short at byte {packet.pos}"
                break
            info.append((packet.pts, packet.dts, packet.is_keyframe, packet.is_discard))
            size += packet.size
            if packets is not None:
                packets.append(packet)
                packets = packets if size <= limit else None
    except (av.FFmpegError, OSError) as e:
        if not info:
            raise
        stop = f"the demuxer failed after {len(info)} packets ({type(e).__name__}: {e})"
    index = _index_from(info, packets, bool(stop), reorder_free=_container_has_pts(container))
    index.stop_reason = stop
    return index


def _container_has_pts(container: av.container.InputContainer) -> bool:
    # AVI stores only decode order; its "pts" equal dts (+ a guess), so decoded B-frames carry wrong pts.
    return "avi" not in container.format.name.split(",")


def _index_from(info: list[tuple], packets, truncated: bool, *, reorder_free: bool) -> FrameIndex:
    """`info`: `(pts, dts, is_keyframe, is_discard)` of each packet in decode order."""
    raw = [pts if pts is not None else dts for pts, dts, _, _ in info]
    valid = all(t is not None for t in raw)
    pts = np.array([t if t is not None else i for i, t in enumerate(raw)], dtype=np.int64)
    dts_equal = all(p == d for p, d, _, _ in info)
    by_pts = valid and len(np.unique(pts)) == len(pts) and (reorder_free or dts_equal)
    shown = np.array([not discard for *_, discard in info], dtype=bool)
    positions = np.flatnonzero(shown)  # packets that show a frame, decode order
    order = positions[np.argsort(pts[positions], kind="stable")] if by_pts else positions
    key_pos = np.array([i for i, (_, _, key, _) in enumerate(info) if key], dtype=np.int64)
    key_pts = pts[key_pos]
    if len(key_pts) and not np.all(np.diff(key_pts) > 0):  # keyframes out of order: trust none
        key_pos, key_pts = key_pos[:0], key_pts[:0]
    first = (info[0][0], info[0][2]) if info else ()
    return FrameIndex(packets, pts, order, key_pts, key_pos, by_pts, truncated, first)
