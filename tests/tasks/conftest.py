from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # the test-local generator module `faces`, whatever pytest's import mode
    sys.path.insert(0, HERE)
