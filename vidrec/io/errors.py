"""The one error type every vidrec decoder raises for a file it cannot read."""

from __future__ import annotations

import os

__all__ = ["VideoDamageWarning", "VideoDecodeError"]


class VideoDecodeError(RuntimeError):
    """A video (or frame folder) that cannot be opened or decoded.

    Args:
        path: the file or folder that failed.
        reason: what went wrong, phrased so the user knows what to check.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep pickling (DataLoader workers) working with two arguments
        return (type(self), (self.path, self.reason))


class VideoDamageWarning(UserWarning):
    """A video that reads, but not wholly: truncated, or data the decoder rejected or concealed.

    The message names the path and what is missing. Readers given `strict=True` raise
    `VideoDecodeError` instead; `warnings.simplefilter("error", VideoDamageWarning)` does the same globally.
    """
