#!/usr/bin/env bash
# Build mamba_ssm's CUDA selective scan on the GPU machine from its PyPI sdist (the baseline only;
# never a dependency). The sdist is downloaded beforehand, on a machine with the package index:
#   MAMBA_SKIP_CUDA_BUILD=TRUE pip download --no-deps --no-binary :all: --no-build-isolation -d .sdist mamba-ssm==2.3.2.post1
# Recipe: ../shared/docs/GPU.md (sm_90 only; the package's module/model imports commented out).
set -euo pipefail
SDIST=${1:-.sdist/mamba_ssm-2.3.2.post1.tar.gz}
rm -rf /tmp/mamba_build && mkdir -p /tmp/mamba_build /tmp/whl
tar xzf "$SDIST" -C /tmp/mamba_build
cd /tmp/mamba_build/mamba_ssm-*
python3 - <<'PY'
import re
setup = open("setup.py").read()
marker = "# HACK: The compiler flag -D_GLIBCXX_USE_CXX11_ABI"
setup = setup.replace(marker, 'cc_flag = ["-gencode", "arch=compute_90,code=sm_90"]\n        ' + marker, 1)
open("setup.py", "w").write(setup)
init = open("mamba_ssm/__init__.py").read()
init = re.sub(r"^(from mamba_ssm\.(modules|models).*)$", r"# \1", init, flags=re.M)
open("mamba_ssm/__init__.py", "w").write(init)
PY
MAMBA_FORCE_BUILD=TRUE MAX_JOBS=16 python3 -m pip wheel -q --no-build-isolation --no-deps -w /tmp/whl .
python3 -m pip install -q --no-deps --no-index /tmp/whl/mamba_ssm-*.whl
python3 -c "import torch, selective_scan_cuda; print('mamba_ssm CUDA scan built')"
