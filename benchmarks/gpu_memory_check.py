"""Does ``gpu_mem_mb`` measure what a GPU really holds? A check on a machine with an NVIDIA GPU.

The plugin's GPU sampler (``pytest_llmperf.run.gpu.GPUSampler``, NVML through nvidia-ml-py)
runs beside every benchmark run and reports the peak device memory in use. This script makes
known allocations with PyTorch (1, 4 and 16 GiB, each filled so the pages are real), samples
them with the plugin's sampler, and prints the measured peak against the allocation and
against ``torch.cuda.mem_get_info``, plus the mean utilisation the sampler saw while a matrix
product kept the GPU busy. It also checks that ``CUDA_VISIBLE_DEVICES`` selects the devices
sampled.

Run (needs torch with CUDA and nvidia-ml-py): ``python benchmarks/gpu_memory_check.py``.
Results are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    import torch

    from pytest_llmperf.run.gpu import GPUSampler, _visible_indices

    if not torch.cuda.is_available():
        print("gpu_memory_check: no CUDA device; nothing to check")
        return 0
    mib = 1024 * 1024
    torch.cuda.init()
    torch.empty(1, device="cuda")  # the CUDA context exists before the baseline sample
    torch.cuda.synchronize()
    with GPUSampler(interval_s=0.05) as idle:
        time.sleep(0.3)
    base = idle.peak_mem_mb
    print(f"devices: {idle.devices}; idle peak {base:.0f} MiB (CUDA context of this process "
          "included)")
    ok = True
    for gib in (1, 4, 16):
        with GPUSampler(interval_s=0.05) as s:
            block = torch.empty(gib * 1024 * mib, dtype=torch.uint8, device="cuda")
            block.fill_(1)
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            time.sleep(0.3)
            del block
            torch.cuda.empty_cache()
            torch.cuda.synchronize()
        assert s.peak_mem_mb is not None and base is not None
        delta = s.peak_mem_mb - base
        used_torch = (total - free) / mib
        err = delta - gib * 1024
        print(f"allocated {gib:>2} GiB: sampler peak {s.peak_mem_mb:.0f} MiB, "
              f"increase {delta:.0f} MiB (error {err:+.0f} MiB); "
              f"cuda mem_get_info used {used_torch:.0f} MiB")
        ok &= abs(err) <= 64 and abs(s.peak_mem_mb - used_torch) <= 64
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    with GPUSampler(interval_s=0.05) as busy:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
    print(f"utilisation while multiplying matrices for 2 s: mean {busy.mean_util_pct:.0f}%")
    ok &= (busy.mean_util_pct or 0) > 50
    os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    print(f"CUDA_VISIBLE_DEVICES=0 -> sampled indices {_visible_indices(4)} of 4")
    ok &= _visible_indices(4) == [0]
    print("gpu_memory_check:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
