"""Compile the Triton scan kernels for an NVIDIA target without a GPU, and read their resource use.

Triton's interpreter (TRITON_INTERPRET=1) runs the kernels' arithmetic on the CPU but not the
compiler: a construct it accepts can still fail to compile, and register spills only show in the
compiled code. Triton wheels bundle ptxas and cuobjdump, so both the compile and the resource use
(registers, spill stack, shared memory) are available on any machine: the tests compile every
kernel variant here for sm_90 (H100/H200), and ``python -m videomamba.ops.triton.compile_check``
prints the table.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import torch

from ..token_order import ScanOrder
from . import conv as conv_kernels
from . import gate as gate_kernels
from . import norm as norm_kernels
from . import scan as scan_launch
from . import scan_gluon, scan_kernels
from .common import available as triton_available
from .settings import CONV, NORM, SCAN

_MODE_NAMES = ("", " reversed", " spatial order", " temporal order")


@dataclass
class KernelResources:
    """What ptxas gave one compiled kernel."""

    name: str
    registers: int
    spill_stack: int  # bytes of stack per thread: registers spilled to local memory
    shared: int
    async_copies: int = 0  # LDGSTS instructions in the SASS: loads issued ahead by the software pipeline
    shuffles: int = 0  # SHFL instructions in the SASS (the backward's dB/dC sums across lanes)
    barriers: int = 0  # BAR instructions in the SASS: each layout conversion through shared memory has one
    # SASS instructions of each loop (by its backward branch), smallest first: the step or window loops' bodies,
    # the work one step (or window) issues a warp
    loops: tuple[int, ...] = ()


def available() -> bool:
    """Whether Triton has its NVIDIA backend with the bundled cuobjdump (no GPU needed)."""
    if not triton_available():
        return False
    import triton

    return os.path.isfile(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump"))


# the d_inner-wide tensors the kernels read and write in the inputs' dtype (bf16 rows of the report; B and C
# reach the scan kernels in fp32)
_SEQUENCE_POINTERS = {"u_ptr", "u2_ptr", "dt_ptr", "dt2_ptr", "z_ptr", "dout_ptr", "out_ptr", "du_ptr", "ddt_ptr",
                      "dz_ptr", "branch_ptr", "normed_ptr", "dnormed_ptr", "dbranch_ptr",
                      # the conv's input, outputs and their gradients (its gy stays fp32), the gate's
                      "x_ptr", "out2_ptr", "g_ptr", "g2_ptr", "dx_ptr", "y_ptr", "sum_ptr", "dy_ptr"}


# what Triton's JIT makes of the arguments of a model's call (the mixer's (b, L, d) activations, d_inner a
# multiple of 16): the channel and state strides are 1 and become constants, every pointer is 16-byte
# aligned, and these integers are multiples of 16. The JIT marks all that (``tt.divisibility``), and it
# decides the layouts: with aligned channel offsets the accesses along the channels are vectorised
# (``SCAN.vector_access``), so a compile without it reports a different kernel than the GPU runs.
_UNIT_STRIDES = {"su_d", "sdt_d", "sz_d", "sg_d", "so_d", "sB_n", "sC_n"}
_ALIGNED_INTEGERS = {"Dm", "part_stride", "su_b", "su_l", "sdt_b", "sdt_l", "sz_b", "sz_l", "sg_b", "sg_l", "so_s",
                     "so_b", "so_l", "sB_b", "sB_l", "sC_b", "sC_l", "sx_b", "sx_l", "sd_b", "sd_l", "D"}
_FLOAT_ARGUMENTS = {"eps"}


def _compile(fn, constexprs: dict, num_warps: int, capability: int, label: str, bf16: bool = False,
             max_registers: int | None = None) -> KernelResources:
    """``fn`` compiled for ``capability`` as the JIT compiles it for a model's call (``_UNIT_STRIDES``,
    ``_ALIGNED_INTEGERS``) and its resources as cuobjdump reports them: arguments named ``*_ptr`` are
    fp32 pointers (with ``bf16``, the sequence tensors bf16), the other non-constexpr arguments int32 (fp32:
    ``_FLOAT_ARGUMENTS``)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if getattr(fn, "is_gluon", lambda: False)():
        from triton.experimental.gluon._runtime import GluonASTSource as ASTSource  # noqa: N814
    constexprs = {**{name: 1 for name in fn.arg_names if name in _UNIT_STRIDES}, **constexprs}
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names)
             if name not in constexprs and (name.endswith("_ptr") or name in _ALIGNED_INTEGERS)}

    def kind(name: str) -> str:
        if name in constexprs:
            return "constexpr"
        if name.endswith("_ptr"):
            return "*bf16" if bf16 and name in _SEQUENCE_POINTERS else "*fp32"
        return "fp32" if name in _FLOAT_ARGUMENTS else "i32"

    source = ASTSource(fn, {name: kind(name) for name in fn.arg_names}, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": num_warps, **({"maxnreg": max_registers} if max_registers else {})}
    kernel = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "kernel.cubin")
        with open(path, "wb") as handle:
            handle.write(kernel.asm["cubin"])
        usage = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True,
                               check=True).stdout
        sass = subprocess.run([tool, "-sass", path], capture_output=True, text=True, check=True).stdout
        loops = _loop_bodies(subprocess.run([os.path.join(os.path.dirname(tool), "nvdisasm"), "-c", path],
                                            capture_output=True, text=True, check=True).stdout)
    numbers = {key: int(value) for key, value in re.findall(r"(REG|STACK|SHARED):(\d+)", usage)}
    # the shared memory a launch asks for (Triton's conversions and Gluon's allocations are dynamic: cuobjdump's
    # SHARED counts only the static part)
    return KernelResources(label, numbers.get("REG", -1), numbers.get("STACK", -1), kernel.metadata.shared,
                           len(re.findall(r"\bLDGSTS\b", sass)), len(re.findall(r"\bSHFL\b", sass)),
                           len(re.findall(r"\bBAR\b", sass)), loops)


def _loop_bodies(listing: str) -> tuple[int, ...]:
    """The instruction count of every loop in an nvdisasm listing: from a label to a branch back to it."""
    instructions = [int(m.group(1), 16) for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+\S", listing)]
    labels = {m.group(1): int(m.group(2), 16)
              for m in re.finditer(r"^\s*\.(L_x_\d+):\s*\n(?:\s*//.*\n)*\s*/\*([0-9a-f]{4,})\*/", listing, re.M)}
    bodies = []
    for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?BRA\S*\s+`?\(?\.(L_x_\d+)", listing):
        at, target = int(m.group(1), 16), labels.get(m.group(2))
        if target is not None and target < at:
            bodies.append(sum(1 for a in instructions if target <= a <= at))
    return tuple(sorted(bodies))


def _job(fn, *args, **kwargs) -> tuple:
    """One ``_compile`` call as picklable data: the kernel named by its module and name."""
    return (fn.fn.__module__, fn.fn.__name__), args, kwargs


def _run_job(job: tuple) -> KernelResources:
    import importlib

    (module, name), args, kwargs = job
    return _compile(getattr(importlib.import_module(module), name), *args, **kwargs)


def _run_jobs(jobs: list[tuple], processes: int) -> list[KernelResources]:
    """The jobs' results in order, compiled in ``processes`` fresh interpreters at once (ptxas and LLVM
    keep one core busy a compile) or here."""
    if processes <= 1:
        return [_run_job(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_run_job, jobs))


def kernel_resources(capability: int = 90, kernels: tuple[str, ...] | None = None,
                     processes: int = 1) -> list[KernelResources]:
    """Compile the scan's forward and backward kernels (every scan order, current tile settings) and
    the conv + SiLU kernels for compute capability ``capability``; their resource use. ``kernels``: only
    those scan kernels (by label: "forward", "backward", ...), in the forward order, fp32. ``processes``:
    compiles at once (each in a fresh interpreter; the settings are resolved here first)."""
    jobs = []
    cuda = torch.device("cuda")
    orders = (ScanOrder("forward"), ScanOrder("reverse"), ScanOrder("spatial", 196, 1), ScanOrder("temporal", 196, 1))
    for mode, order in enumerate(orders[:1] if kernels else orders):
        states = 16 // (SCAN.n_split or 1)
        constexprs = {"N": 16, "NS": states, "CHUNK": SCAN.chunk,
                      "BLOCK_D": SCAN.block_d, "STAGES": SCAN.stages, "HAS_D": True, "HAS_Z": True,
                      "HAS_BIAS": True,
                      "HAS_DLAST": True, "ONE_LOOP": SCAN.chunk < SCAN.one_loop_below, "CHECKPOINTS": True,
                      "WINDOW": scan_launch._window(SCAN.chunk)}
        for label, fn, role in (("forward", scan_kernels._scan_fwd_kernel, "forward"),
                                ("backward", scan_kernels._scan_bwd_kernel, "backward"),
                                ("segment summary forward", scan_kernels._segment_fwd_kernel, "forward summary"),
                                ("segment summary backward", scan_kernels._segment_bwd_kernel, "backward summary"),
                                ("window entries", scan_kernels._window_entries_kernel, "window entries")):
            if kernels and label not in kernels:
                continue
            options = {**constexprs, **scan_launch._kernel_options(cuda, True, order),
                       "G": SCAN.channel_groups[role], "VECTOR": SCAN.vector_access[role]}
            if fn is scan_kernels._scan_bwd_kernel:  # the backward runs on the window entries, a window a chunk
                options["CHUNK"] = options["WINDOW"]
            # bf16: read as 4-byte words; paired: both directions in one launch (the backward one reversed); paired
            # bf16 is what a model under autocast runs
            variants = ((False, False), (True, False)) if mode == 0 and not kernels \
                else ((False, False), (False, True), (True, True)) if mode == 1 else ((False, False),)
            for bf16, paired in variants:
                # a pair never takes a last-state gradient (HAS_DLAST False, as in every model) and runs without
                # z (the gate is applied once to the directions' sum, ``triton_forward_pair``)
                variant = {**options, "PAIRED": paired, **({"HAS_DLAST": False, "HAS_Z": False} if paired else {})}
                chosen = {k: v for k, v in variant.items() if k in fn.arg_names}
                cap = scan_launch._backward_build(bf16)[0] if fn is scan_kernels._scan_bwd_kernel else None
                jobs.append(_job(fn, chosen, SCAN.num_warps, capability,
                                 f"{label}{' paired' if paired else _MODE_NAMES[mode]}{' bf16' if bf16 else ''}",
                                 bf16, cap))
    if kernels:
        return _run_jobs(jobs, processes)
    # the Gluon backward (``SCAN.backward_gluon``) as the model runs it (paired, bf16, reversed) and one direction
    # in fp32 with z and the last state's gradient, every input it can take
    if scan_gluon.gluon is not None:
        backward = {"N": 16, "NS": 16, "BLOCK_D": SCAN.block_d, "G": 1, "VECTOR": True, "STAGES": SCAN.stages,
                    "CHUNK": scan_launch._window(SCAN.chunk), "HAS_D": True, "HAS_BIAS": True}
        for label, bf16, paired, order in (("backward gluon paired bf16", True, True, orders[1]),
                                           ("backward gluon", False, False, orders[0])):
            options = {**backward, **scan_launch._kernel_options(cuda, True, order), "PAIRED": paired,
                       "HAS_Z": not paired, "HAS_DLAST": not paired}
            jobs.append(_job(scan_gluon._scan_bwd_gluon_kernel, options, 1, capability, label, bf16,
                             SCAN.gluon_build[0]))
    # the window-tile forward (``SCAN.forward_tile``; a window of 8 where off) in the model's build (paired, bf16)
    forward_tile = {"N": 16, "NS": 16, "BLOCK_D": SCAN.forward_tile_block_d, "G": SCAN.forward_tile_groups,
                    "CHUNK": SCAN.chunk, "WINDOW": SCAN.forward_tile or 8, "STAGES": SCAN.forward_tile_stages,
                    "VECTOR": True, "HAS_D": True, "HAS_Z": False, "HAS_BIAS": True, "PAIRED": True, "CHECKPOINTS": True,
                    **scan_launch._kernel_options(cuda, True, orders[1])}
    for parts in (1, 2):
        jobs.append(_job(scan_kernels._scan_fwd_tile_kernel, {**forward_tile, "PARTS": parts}, 1, capability,
                         f"forward tile paired bf16{', 2 state parts' if parts == 2 else ''}", True))
    conv = {"K": 4, "MODE": 2, "BLOCK_L": CONV.block_l, "BLOCK_D": CONV.block_d}
    grad = {**conv, "BLOCK_L": CONV.grad_block_l, "BLOCK_D": CONV.grad_block_d}
    for label, fn, constexprs, warps in (  # the per-frame order: all the code
            ("conv+silu forward", conv_kernels._conv_silu_fwd_kernel, conv, CONV.num_warps),
            ("conv+silu output grad", conv_kernels._conv_silu_grad_kernel, grad, CONV.grad_warps),
            ("conv+silu input grad", conv_kernels._conv_input_grad_kernel, conv, CONV.num_warps)):
        # paired: both directions in one launch; paired bf16 is what a model under autocast runs
        for paired, bf16 in ((False, False), (True, False), (True, True)):
            jobs.append(_job(fn, {**constexprs, "PAIRED": paired}, warps, capability,
                             f"{label}{' paired' if paired else ''}{' bf16' if bf16 else ''}", bf16))
    gate = {"BLOCK_L": SCAN.gate_block_l, "BLOCK_D": SCAN.gate_block_d}
    for label, fn, constexprs in (("pair gate forward", gate_kernels._pair_gate_fwd_kernel,
                                   {"SUMMED": False, "STORE_SUM": True}),
                                  ("pair gate output again", gate_kernels._pair_gate_fwd_kernel,
                                   {"SUMMED": True, "STORE_SUM": False}),
                                  ("pair gate backward", gate_kernels._pair_gate_bwd_kernel, {})):
        for bf16 in (False, True):
            jobs.append(_job(fn, {**gate, **constexprs}, SCAN.gate_warps, capability,
                             f"{label}{' bf16' if bf16 else ''}", bf16))
    # the residual add + RMSNorm at VideoMamba-S's width (384), bf16 branch and output, as a model calls it
    width = 512
    norm = {"BLOCK_ROWS": max(1, NORM.block_elements // width), "BLOCK_D": width, "HAS_BRANCH": True}
    for label, fn, constexprs in (
            ("add + rms norm forward", norm_kernels._add_rms_norm_fwd_kernel, norm),
            ("add + rms norm backward", norm_kernels._add_rms_norm_bwd_kernel, {**norm, "HAS_DTOTAL": True})):
        jobs.append(_job(fn, constexprs, NORM.num_warps, capability, label, bf16=True))
    return _run_jobs(jobs, processes)

if __name__ == "__main__":
    print("| kernel (sm_90) | registers | spill stack (B/thread) | shared (B) | async copies (LDGSTS) | shuffles "
          "| barriers | loop bodies (instructions) |\n|---|---|---|---|---|---|---|---|")
    for row in kernel_resources():
        print(f"| {row.name} | {row.registers} | {row.spill_stack} | {row.shared} | {row.async_copies} "
              f"| {row.shuffles} | {row.barriers} | {', '.join(map(str, row.loops))} |")
