"""Both directions' scan, forward+backward, a few steps at one shape: a program for Nsight Compute.

Usage (GPU machine, repository root): PYTHONPATH=src ncu --clock-control none --kernel-name
regex:"_scan_(fwd|bwd)_kernel" --launch-skip 4 --launch-count 2 --section SpeedOfLight ... python3
benchmarks/ncu_step.py 8 785"""

import sys

import torch

import scan_gpu_sweep  # benchmarks/ is on the path when this script runs


def main() -> None:
    batch, length = int(sys.argv[1]), int(sys.argv[2])
    step = scan_gpu_sweep._fresh_step(*scan_gpu_sweep._paired_call(batch, length))
    for _ in range(4):
        step()
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
