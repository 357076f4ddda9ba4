"""The compiled CPU selective scan: C source in csrc/, built with the system's C compiler at first
use and loaded through ctypes.

Why not a torch C++ extension: compiling against torch's headers takes minutes on a 2-core
machine; this file includes only libc and OpenMP and builds in about a second. The shared library
is cached under ``$VIDEOMAMBA_CACHE`` (default ``~/.cache/videomamba``), keyed by the source, the
flags and the CPU, so it is rebuilt whenever one of them changes. If no compiler is found the
kernel reports itself unavailable and ``selective_scan`` falls back to the chunked PyTorch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("csrc") / "selective_scan_cpu.c"
# -ffast-math lets gcc call glibc's vector exp (libmvec, <= 4 ulp); the tests hold the result to
# the float64 reference, so the reassociation it allows is checked, not assumed.
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_load_error: str | None = None


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc or gcc) on PATH")
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(_FLAGS).encode() + _cpu_signature().encode()).hexdigest()[:16]
    cache = Path(os.environ.get("VIDEOMAMBA_CACHE", Path.home() / ".cache" / "videomamba"))
    target = cache / f"selective_scan_cpu_{key}.so"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            built = Path(tmp) / target.name
            subprocess.run([compiler, *_FLAGS, str(_SOURCE), "-o", str(built), "-lm"],
                           check=True, capture_output=True, text=True)
            os.replace(built, target)  # atomic: concurrent builders (DDP ranks) never see half a file
    lib = ctypes.CDLL(str(target))
    for name in ("scan_fwd_f32", "scan_fwd_f64", "scan_bwd_f32", "scan_bwd_f64"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first call; None when it cannot be built."""
    global _library, _load_error
    if _library is None and _load_error is None:
        with _lock:
            if _library is None and _load_error is None:
                try:
                    _library = _build()
                except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
                    detail = getattr(err, "stderr", "") or str(err)
                    _load_error = f"{type(err).__name__}: {detail}"
                    warnings.warn(f"videomamba: compiled CPU scan unavailable ({_load_error.strip()[:300]}); "
                                  "using the PyTorch chunked scan", RuntimeWarning, stacklevel=3)
    return _library


def available() -> bool:
    """Whether the compiled CPU kernel can run here."""
    return library() is not None


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def cpu_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """(out, last state) by the C kernel; contiguous float32/float64 CPU inputs."""
    lib = library()
    if lib is None:
        raise RuntimeError(f"compiled CPU scan unavailable: {_load_error}")
    suffix = "f64" if u.dtype == torch.float64 else "f32"
    batch, d_inner, length = u.shape
    n = A.shape[1]
    Bt = B.transpose(1, 2).contiguous()
    Ct = C.transpose(1, 2).contiguous()
    out = torch.empty_like(u)
    last = u.new_empty(batch, d_inner, n)
    getattr(lib, f"scan_fwd_{suffix}")(
        _ptr(u), _ptr(delta), _ptr(A), _ptr(Bt), _ptr(Ct), _ptr(D), _ptr(z), _ptr(delta_bias),
        ctypes.c_int(int(delta_softplus)), ctypes.c_long(batch), ctypes.c_long(d_inner),
        ctypes.c_long(length), ctypes.c_long(n), ctypes.c_int(torch.get_num_threads()), _ptr(out), _ptr(last))
    return out, last


def cpu_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, dbias), None where an input is absent."""
    lib = library()
    suffix = "f64" if u.dtype == torch.float64 else "f32"
    batch, d_inner, length = u.shape
    n = A.shape[1]
    threads = torch.get_num_threads()
    Bt = B.transpose(1, 2).contiguous()
    Ct = C.transpose(1, 2).contiguous()
    dout = dout.contiguous()
    dlast = dlast.contiguous() if dlast is not None else None
    du, ddelta = torch.empty_like(u), torch.empty_like(u)
    dz = torch.empty_like(u) if z is not None else None
    dA_bd = u.new_empty(batch, d_inner, n)
    dBt = u.new_zeros(threads, batch, length, n)
    dCt = u.new_zeros(threads, batch, length, n)
    dD_bd = u.new_empty(batch, d_inner)
    dbias_bd = u.new_empty(batch, d_inner)
    status = getattr(lib, f"scan_bwd_{suffix}")(
        _ptr(u), _ptr(delta), _ptr(A), _ptr(Bt), _ptr(Ct), _ptr(D), _ptr(z), _ptr(delta_bias),
        ctypes.c_int(int(delta_softplus)), ctypes.c_long(batch), ctypes.c_long(d_inner),
        ctypes.c_long(length), ctypes.c_long(n), ctypes.c_int(threads), _ptr(dout), _ptr(dlast),
        _ptr(du), _ptr(ddelta), _ptr(dA_bd), _ptr(dBt), _ptr(dCt), _ptr(dD_bd), _ptr(dz),
        _ptr(dbias_bd))
    if status != 0:
        raise MemoryError("selective scan backward: could not allocate per-thread state buffers")
    dB = dBt.sum(0).transpose(1, 2)
    dC = dCt.sum(0).transpose(1, 2)
    dD = dD_bd.sum(0) if D is not None else None
    dbias = dbias_bd.sum(0) if delta_bias is not None else None
    return du, ddelta, dA_bd.sum(0), dB, dC, dD, dz, dbias
