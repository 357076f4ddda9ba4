"""Run a check script in a fresh interpreter: TRITON_INTERPRET must be set before triton is imported,
so the kernel tests run their checks in a subprocess, on the CPU (interpreter) or on a GPU.

A check runs its cases in one process (importing torch and triton costs seconds a process) and
reports the failures of each case by its id, so that each case is a parametrised test of its own.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS_MARK = "CASE_RESULTS:"


def assert_check_passes(script: str, device: str, interpret: bool, timeout: int) -> None:
    """Run ``python -c script device`` from the repository root, with TRITON_INTERPRET set to
    ``interpret``; fail with the end of its output unless it exits 0."""
    result = _run(script, [device], interpret, timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def run_cases(script: str, device: str, interpret: bool, cases: dict[str, dict], timeout: int) -> dict[str, list[str]]:
    """Run ``script`` on ``cases`` (id -> JSON-able settings, handed over as ``sys.argv[2]``); the script
    prints ``RESULTS_MARK`` and a JSON object id -> list of failure messages. Returns that object; a
    script that crashes fails every case with the end of its output."""
    result = _run(script, [device, json.dumps(cases)], interpret, timeout)
    for line in result.stdout.splitlines():
        if line.startswith(RESULTS_MARK):
            return json.loads(line[len(RESULTS_MARK):])
    crash = f"the check crashed (exit {result.returncode}):\n" + result.stdout[-2000:] + result.stderr[-2000:]
    return {case: [crash] for case in cases}


def _run(script: str, args: list[str], interpret: bool, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1" if interpret else "0"}
    return subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
