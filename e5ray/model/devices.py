"""The machine the embedder runs on: its CPUs and, for device="gpu", CUDA.

Kept apart from the embedder so that pool sizing and the GPU checks of the job
entrypoints can ask about the machine without loading a model.
"""

from __future__ import annotations

import os

import onnxruntime as ort

from e5ray.errors import DeviceUnavailableError


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def require_cuda() -> None:
    """Raise, saying what is missing, unless onnxruntime offers the CUDA execution provider."""
    if hasattr(ort, "preload_dlls"):
        # Load CUDA and cuDNN from the nvidia-* wheels when they are installed (as with
        # PyTorch); system-wide CUDA libraries are found without this.
        try:
            ort.preload_dlls()
        except Exception:  # absent wheels are fine: session creation reports what is missing
            pass
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeviceUnavailableError(
            "device='gpu' needs onnxruntime with the CUDA execution provider; this "
            f"onnxruntime ({ort.__version__}) offers {available}. Install the GPU wheel in an "
            "environment without the CPU one: pip uninstall -y onnxruntime && pip install 'e5ray[gpu]'"
        )
