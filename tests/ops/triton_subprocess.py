"""Run a check script in a fresh interpreter: TRITON_INTERPRET must be set before triton is imported,
so the kernel tests run their checks in a subprocess, on the CPU (interpreter) or on a GPU."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_check(script: str, device: str, interpret: bool, timeout: int) -> subprocess.CompletedProcess:
    """``python -c script device`` from the repository root, with TRITON_INTERPRET set to ``interpret``."""
    env = {**os.environ, "TRITON_INTERPRET": "1" if interpret else "0"}
    return subprocess.run([sys.executable, "-c", script, device], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
