"""edged's own detector family, trained here: a compact student distilled from a teacher and real labels, its
pruned and binary siblings, and the script that rebuilds them all (`python -m edged.factory.train.family`).

Needs the `[build]` extra (torch, onnx). The daemon never imports this package.
"""

import os

# torch's OpenMP threads busy-wait between ops; on a shared 2-core machine that made training steps 5-10x slower
# (the same trap as onnxruntime's spinning). Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
