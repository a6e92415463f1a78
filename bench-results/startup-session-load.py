"""Session creation of one ONNX model in a fresh process: now (ORT_ENABLE_ALL on model.onnx) or
from a saved ORT_ENABLE_EXTENDED graph (BENCHMARKS.md, start-up: the model load).

    python bench-results/startup-session-load.py write MODEL.onnx       # saves MODEL.onnx.opt.onnx once
    python bench-results/startup-session-load.py all|cached MODEL.onnx  # alternate these, a fresh process each
"""

import importlib
import sys
import time

t0 = time.perf_counter()
ort = importlib.import_module("onnxruntime")
t1 = time.perf_counter()
variant, path = sys.argv[1], sys.argv[2]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
if variant == "write":
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = path + ".opt.onnx"
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    sys.exit()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
ort.InferenceSession(path if variant == "all" else path + ".opt.onnx", options, providers=["CPUExecutionProvider"])
load = open("/proc/loadavg").read().split()[0]
print(variant, "import", round(t1 - t0, 2), "session", round(time.perf_counter() - t1, 2), "load", load)
