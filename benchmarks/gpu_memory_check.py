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

``gpu_mem_mb`` is the engine's own memory (NVML's per-process figure for the engine's process
tree) where NVML can attribute memory to processes, else the device's: the script prints both
figures for each allocation, which one the sampler chose (``scope``) and why, and checks that a
child process's allocation (as vLLM's EngineCore is a child of the test process) is counted
as this process tree's, while the device figure also holds everything else on the GPU.

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
    base = idle.peak_device_mem_mb
    print(f"devices: {idle.devices}; idle device peak {base:.0f} MiB (CUDA context of this "
          f"process included); this process's own {idle.peak_mem_mb:.0f} MiB (scope "
          f"{idle.scope})")
    ok = True
    increases: dict[int, float] = {}
    own: dict[int, float] = {}
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
        assert s.peak_device_mem_mb is not None and base is not None
        increases[gib] = s.peak_device_mem_mb - base
        used_torch = (total - free) / mib
        print(f"allocated {gib:>2} GiB: device peak {s.peak_device_mem_mb:.0f} MiB, increase "
              f"{increases[gib]:.0f} MiB (allocation + {increases[gib] - gib * 1024:.0f}); "
              f"cuda mem_get_info used {used_torch:.0f} MiB "
              f"(NVML counts {s.peak_device_mem_mb - used_torch:.0f} MiB more); "
              f"this process tree's own: {s.peak_mem_mb:.0f} MiB (gpu_mem_mb, scope "
              f"{s.scope}{': ' + s.scope_reason if s.scope_reason else ''})")
        if s.scope == "process":
            own[gib] = s.peak_mem_mb or 0.0
    for small, large in ((1, 4), (4, 16)):
        step = increases[large] - increases[small]
        want = (large - small) * 1024
        print(f"{small} -> {large} GiB: the sampler saw {step:.0f} MiB more, the allocation grew "
              f"by {want} MiB (error {step - want:+.0f} MiB)")
        ok &= abs(step - want) <= 16
        if small in own and large in own:
            own_step = own[large] - own[small]
            print(f"  per process: {own_step:.0f} MiB more (error {own_step - want:+.0f} MiB)")
            ok &= abs(own_step - want) <= 16
    ok &= child_process_check(idle.peak_device_mem_mb or 0.0)
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


CHILD = """
import sys, time, torch
block = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
block.fill_(1)
torch.cuda.synchronize()
print("ready", flush=True)
sys.stdin.readline()
"""


def child_process_check(idle_device_mb: float) -> bool:
    """A child process allocates 2 GiB: the sampler of this process (whose tree holds the
    child) must count it; a sampler of only an unrelated pid's tree must not."""
    import subprocess

    from pytest_llmperf.run.gpu import GPUSampler

    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        child.stdout.readline()  # "ready": its 2 GiB are in use
        with GPUSampler(interval_s=0.05) as tree:
            time.sleep(0.3)
        with GPUSampler([child.pid], interval_s=0.05) as only_child:
            time.sleep(0.3)
        with GPUSampler([os.getppid()], interval_s=0.05) as parent:
            time.sleep(0.3)
        child.stdin.write("\n")
        child.stdin.flush()
    finally:
        child.wait(timeout=60)
    print(f"child process with 2 GiB: this process tree {tree.peak_mem_mb:.0f} MiB "
          f"(scope {tree.scope}), the child alone {only_child.peak_mem_mb:.0f} MiB, the "
          f"parent shell's tree {parent.peak_mem_mb:.0f} MiB, device "
          f"{tree.peak_device_mem_mb:.0f} MiB (idle {idle_device_mb:.0f} MiB)")
    if tree.scope != "process":
        print(f"  per-process figures unavailable here: {tree.scope_reason}")
        return True  # the fallback is the device figure, reported as such
    ok = 2048 <= (only_child.peak_mem_mb or 0) <= 2048 + 1024  # + the child's CUDA context
    ok &= (tree.peak_mem_mb or 0) >= (only_child.peak_mem_mb or 0)
    return ok


if __name__ == "__main__":
    sys.exit(main())
