"""Run a check script in a fresh interpreter: TRITON_INTERPRET must be set before triton is imported,
so the kernel tests run their checks in a subprocess, on the CPU (interpreter) or on a GPU."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def assert_check_passes(script: str, device: str, interpret: bool, timeout: int) -> None:
    """Run ``python -c script device`` from the repository root, with TRITON_INTERPRET set to
    ``interpret``; fail with the end of its output unless it exits 0."""
    env = {**os.environ, "TRITON_INTERPRET": "1" if interpret else "0"}
    result = subprocess.run([sys.executable, "-c", script, device], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
