"""A worker's model load does not import the onnx package once the fused copy exists.

Importing onnx only to learn whether it is installed took ~1 s of every actor's start
(BENCHMARKS.md, start-up); it is now looked up, not imported, and the file loaded (and so
every vector) is the one loaded before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from e5ray.model.embedder import E5Embedder
from e5ray.model.precision import prepare_model_file

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["the first passage", "a second, longer passage about something else entirely"]
CHILD = """
import json, sys
from pathlib import Path
from e5ray.model.embedder import E5Embedder
from e5ray.model.precision import prepare_model_file
model = sys.argv[1]
chosen = prepare_model_file(Path(model) / "model.onnx", "fp32")
vectors = E5Embedder("tiny", model_path=model, threads=1).embed(json.loads(sys.argv[2])).vectors
print(json.dumps({"chosen": str(chosen), "onnx": "onnx" in sys.modules, "vectors": vectors.tolist()}))
"""


def test_a_fresh_process_loads_the_same_model_file_and_vectors_without_importing_onnx(bert_model_dir):
    chosen = prepare_model_file(Path(bert_model_dir) / "model.onnx", "fp32")  # the fused copy (or report) made
    expected = E5Embedder("tiny", model_path=bert_model_dir, threads=1).embed(TEXTS).vectors
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(bert_model_dir), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["onnx"] is False
    assert child["chosen"] == str(chosen)
    np.testing.assert_array_equal(np.array(child["vectors"], dtype=np.float32), expected)
