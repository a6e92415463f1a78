"""GPU path check on a CUDA machine: tiny-model parity CPU vs GPU (fp32 and fp16, mean and cls pooling).

    python jobs/gpu_check.py && python jobs/benchmark.py --device gpu --shape e5-large

Run before the GPU benchmark: it fails in seconds, naming what is wrong, where the
benchmark would first spend minutes writing and converting a 2 GB model.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np

from e5ray import E5Embedder
from e5ray.model.embedder import require_cuda
from e5ray.testing import sample_words, write_test_model


def main() -> int:
    require_cuda()
    words = sample_words()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=int(k))) for k in rng.integers(1, 200, size=300)]
    worst = 1.0
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("bert", "xlmr"):
            model = write_test_model(f"{tmp}/{arch}", arch=arch, seed=3)
            for pooling in ("mean", "cls"):  # the fp16 model pools on the device, by either method
                cpu = E5Embedder("tiny", model_path=model, pooling=pooling).embed_passages(texts)
                for precision in ("fp32", "fp16"):
                    gpu = E5Embedder("tiny", model_path=model, device="gpu", precision=precision, pooling=pooling)
                    vectors = gpu.embed_passages(texts)
                    cos = np.sum(cpu * vectors, axis=1)
                    norms = np.linalg.norm(vectors, axis=1)
                    print(
                        f"{arch} {pooling} gpu {precision} vs cpu fp32: cosine min {cos.min():.6f} "
                        f"mean {cos.mean():.6f}; norms {norms.min():.6f}..{norms.max():.6f}; "
                        f"providers {gpu.session.get_providers()[:1]}"
                    )
                    worst = min(worst, float(cos.min()))
    ok = worst >= 0.999
    print("GPU parity", "OK" if ok else "FAILED", f"(worst cosine {worst:.6f}, need >= 0.999)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
