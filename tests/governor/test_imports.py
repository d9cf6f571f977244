"""The daemon imports edged.governor on a Pi: it must stay light."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_governor_pulls_in_nothing_heavy():
    heavy = ["numpy", "matplotlib", "onnxruntime", "cv2", "edged.zoo", "edged.vision", "edged.power"]
    code = f"import sys, edged.governor; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
