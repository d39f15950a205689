"""Does ``gpu_mem_mb`` measure what a GPU really holds? A check on a machine with an NVIDIA GPU.

The plugin's GPU sampler (``pytest_llmperf.run.gpu.GPUSampler``, NVML through nvidia-ml-py)
runs beside every benchmark run and reports the peak device memory in use, as nvidia-smi shows
it. This script makes known allocations with PyTorch (1, 4 and 16 GiB, each filled so the pages
are real) and samples them with the plugin's sampler. The first allocation also loads the fill
kernel's code onto the device, a constant the allocations share, so the check is on the
differences between allocations, which must match their sizes. It prints the sampler's peak
beside ``torch.cuda.mem_get_info`` (which does not count memory the driver reserves), the
mean utilisation the sampler saw while a matrix product kept the GPU busy, and checks that
``CUDA_VISIBLE_DEVICES`` selects the devices sampled.

Run (needs torch with CUDA and nvidia-ml-py): ``python benchmarks/gpu_memory_check.py``.
Results are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    import torch

    from pytest_llmperf.run.gpu import GPUSampler

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
    increases: dict[int, float] = {}
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
        increases[gib] = s.peak_mem_mb - base
        used_torch = (total - free) / mib
        print(f"allocated {gib:>2} GiB: sampler peak {s.peak_mem_mb:.0f} MiB, increase "
              f"{increases[gib]:.0f} MiB (allocation + {increases[gib] - gib * 1024:.0f}); "
              f"cuda mem_get_info used {used_torch:.0f} MiB "
              f"(NVML counts {s.peak_mem_mb - used_torch:.0f} MiB more)")
    for small, large in ((1, 4), (4, 16)):
        step = increases[large] - increases[small]
        want = (large - small) * 1024
        print(f"{small} -> {large} GiB: the sampler saw {step:.0f} MiB more, the allocation grew "
              f"by {want} MiB (error {step - want:+.0f} MiB)")
        ok &= abs(step - want) <= 16
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    with GPUSampler(interval_s=0.05) as busy:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
    print(f"utilisation while multiplying matrices for 2 s: mean {busy.mean_util_pct:.0f}%")
    ok &= (busy.mean_util_pct or 0) > 50
    os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    with GPUSampler() as one:
        pass
    print(f"CUDA_VISIBLE_DEVICES=0: the sampler reads {one.devices}")
    ok &= len(one.devices) == 1
    print("gpu_memory_check:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
