"""Compile the Triton scan kernels for an NVIDIA target without a GPU, and read their resource use.

Triton's interpreter (TRITON_INTERPRET=1) runs the kernels' arithmetic on the CPU but not the
compiler: a construct it accepts can still fail to compile, and register spills only show in the
compiled code. Triton wheels bundle ptxas and cuobjdump, so both the compile and the resource use
(registers, spill stack, shared memory) are available on any machine: the tests compile every
kernel variant here for sm_90 (H100/H200), and ``python -m videomamba.ops.triton_compile_check``
prints the table.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from . import triton_scan

_FWD_POINTERS = ("u_ptr", "dt_ptr", "A_ptr", "B_ptr", "C_ptr", "D_ptr", "z_ptr", "bias_ptr", "out_ptr", "last_ptr",
                 "ckpt_ptr")
_BWD_POINTERS = ("u_ptr", "dt_ptr", "A_ptr", "B_ptr", "C_ptr", "D_ptr", "z_ptr", "bias_ptr", "ckpt_ptr", "dout_ptr",
                 "dlast_ptr", "du_ptr", "ddt_ptr", "dA_ptr", "dB_ptr", "dC_ptr", "dD_ptr", "dz_ptr", "dbias_ptr")


@dataclass
class KernelResources:
    """What ptxas gave one compiled kernel."""

    name: str
    registers: int
    spill_stack: int  # bytes of stack per thread: registers spilled to local memory
    shared: int


def available() -> bool:
    """Whether Triton has its NVIDIA backend with the bundled cuobjdump (no GPU needed)."""
    if not triton_scan.available():
        return False
    import triton

    return os.path.isfile(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump"))


def _compile(fn, pointers, ints, constexprs: dict, num_warps: int, capability: int) -> str:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {name: "*fp32" for name in pointers}
    signature.update({name: "i32" for name in ints})
    signature.update({name: "constexpr" for name in constexprs})
    kernel = triton.compile(ASTSource(fn, signature, constexprs=constexprs),
                            target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps})
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "kernel.cubin")
        with open(path, "wb") as handle:
            handle.write(kernel.asm["cubin"])
        return subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True,
                              check=True).stdout


def kernel_resources(capability: int = 90) -> list[KernelResources]:
    """Compile the forward and backward kernels of both versions, both directions, with the current
    tile settings, for compute capability ``capability``; their resource use."""
    results = []
    for version in (1, 2):
        for reverse in (0, 1):
            common = {"N": 16, "CHUNK": triton_scan.CHUNK, "HAS_D": True, "HAS_Z": True, "HAS_BIAS": True,
                      "SOFTPLUS": True, "REVERSE": reverse}
            if version == 1:
                block, warps = triton_scan.BLOCK_D, triton_scan.NUM_WARPS
                kernels = [("forward", triton_scan._scan_fwd_kernel, _FWD_POINTERS, ("Dm", "L", "n_chunks"), {}),
                           ("backward", triton_scan._scan_bwd_kernel,
                            _BWD_POINTERS[:11] + ("scratch_ptr",) + _BWD_POINTERS[11:],
                            ("Dm", "L", "n_chunks", "n_dblocks", "part_stride"),
                            {"ATOMIC_DBC": triton_scan.ATOMIC_DBC})]
            else:
                block, warps = triton_scan.V2_BLOCK_D, triton_scan.V2_NUM_WARPS
                kernels = [("forward", triton_scan._scan_fwd_kernel_v2, _FWD_POINTERS, ("Dm", "L", "n_chunks"), {}),
                           ("backward", triton_scan._scan_bwd_kernel_v2, _BWD_POINTERS,
                            ("Dm", "L", "n_chunks", "part_stride"), {"ATOMIC_DBC": triton_scan.ATOMIC_DBC})]
            for label, fn, pointers, ints, extra in kernels:
                usage = _compile(fn, pointers, ints, {**common, "BLOCK_D": block, **extra}, warps, capability)
                numbers = {key: int(value) for key, value in re.findall(r"(REG|STACK|SHARED):(\d+)", usage)}
                results.append(KernelResources(f"v{version} {label}{' reversed' if reverse else ''}",
                                               numbers.get("REG", -1), numbers.get("STACK", -1),
                                               numbers.get("SHARED", -1)))
    return results


if __name__ == "__main__":
    print("| kernel (sm_90) | registers | spill stack (B/thread) | shared (B) |\n|---|---|---|---|")
    for row in kernel_resources():
        print(f"| {row.name} | {row.registers} | {row.spill_stack} | {row.shared} |")
