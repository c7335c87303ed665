"""The one error type every vidrec decoder raises for a file it cannot read."""

from __future__ import annotations

import os

__all__ = ["VideoDecodeError"]


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
