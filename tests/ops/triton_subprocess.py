"""Run a check script in a fresh interpreter: TRITON_INTERPRET must be set before triton is imported,
so the kernel tests run their checks in a subprocess, on the CPU (interpreter) or on a GPU.

A check runs its cases in one process (importing torch and triton costs seconds a process) and
reports the failures of each case by its id, so that each case is a parametrised test of its own.
"""

import json
import os
import subprocess
import sys
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS_MARK = "CASE_RESULTS:"


def assert_check_passes(script: str, device: str, interpret: bool, timeout: int) -> None:
    """Run ``python -c script device`` from the repository root, with TRITON_INTERPRET set to
    ``interpret``; fail with the end of its output unless it exits 0."""
    result = _run(script, [device], interpret, timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def run_cases(script: str, device: str, interpret: bool, cases: dict[str, dict], timeout: int,
              processes: int = 1, cost: Callable[[dict], float] | None = None) -> dict[str, list[str]]:
    """Run ``script`` on ``cases`` (id -> JSON-able settings, handed over as ``sys.argv[2]``); the script
    prints ``RESULTS_MARK`` and a JSON object id -> list of failure messages. Returns that object; a
    script that crashes fails every case it was given with the end of its output.

    ``processes``: the cases shared among this many scripts running at once (the interpreter keeps one
    core busy; CI has two), for scripts that run exactly the cases they are handed: each case, the dearest
    first by ``cost`` (a case's settings -> its estimated run time; default the same for all), to the share
    with the least so far, so that the shares end together."""
    cost = cost or (lambda case: 1.0)
    count = max(1, min(processes, len(cases)))
    shares, loads = [[] for _ in range(count)], [0.0] * count
    for name in sorted(cases, key=lambda n: -cost(cases[n])):
        lightest = loads.index(min(loads))
        shares[lightest].append(name)
        loads[lightest] += cost(cases[name])
    running = [(share, subprocess.Popen([sys.executable, "-c", script, device, json.dumps({n: cases[n] for n in share})],
                                        env=_environment(interpret), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
               for share in shares]
    results: dict[str, list[str]] = {}
    for share, process in running:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        reported = next((json.loads(line[len(RESULTS_MARK):]) for line in stdout.splitlines()
                         if line.startswith(RESULTS_MARK)), None)
        if reported is None:
            crash = f"the check crashed (exit {process.returncode}):\n" + stdout[-2000:] + stderr[-2000:]
            reported = {case: [crash] for case in share}
        for case, failures in reported.items():
            results.setdefault(case, []).extend(failures)
    return results


def _environment(interpret: bool) -> dict[str, str]:
    return {**os.environ, "TRITON_INTERPRET": "1" if interpret else "0"}


def _run(script: str, args: list[str], interpret: bool, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], env=_environment(interpret), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
