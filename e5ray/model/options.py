"""The model layer's closed sets of choices, named once.

The embedder validates against them and the job's configuration (`e5ray.config`) and the
command line offer them, so the layer that uses a value is the one that defines it. This
module imports nothing: reading the choices costs no onnxruntime import.
"""

from __future__ import annotations

DEVICES = ("cpu", "gpu")
PRECISIONS = ("fp32", "fp16", "int8")
