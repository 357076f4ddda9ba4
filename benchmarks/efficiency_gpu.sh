#!/usr/bin/env bash
# The efficiency report at the paper's sizes on one GPU (run from the repository root):
# videomamba_small and the VideoMAE-S baseline, 8 to 128 frames, 224x224, batch 8, bf16 inference.
set -euo pipefail
OUT=${OUT:-efficiency_gpu}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 -m videomamba efficiency --device cuda --frames 8 16 32 64 128 --img-size 224 --batch 8 --output "$OUT"
