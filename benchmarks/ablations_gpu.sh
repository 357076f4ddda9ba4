#!/usr/bin/env bash
# The ablation studies on one GPU (run from the repository root): `videomamba ablate --preset gpu`,
# several runs at once, then the report and the kept models copied to $OUT (or ./ablations_gpu).
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
DEST=${OUT:-ablations_gpu}
WORK=${ABLATE_DIR:-/tmp/ablations}
mkdir -p "$DEST" "$WORK"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
start=$(date +%s)
timeout "${ABLATE_TIMEOUT:-1800}" python3 -m videomamba ablate --output "$WORK" --workers "${WORKERS:-6}" "$@"
echo "ablate exit $? after $(( $(date +%s) - start )) s"
nvidia-smi --query-gpu=memory.used --format=csv,noheader
cp "$WORK"/ablations.md "$WORK"/ablations.png "$WORK"/summary.json "$WORK"/results.jsonl "$WORK"/*.safetensors "$DEST"/ 2>/dev/null
ls -la "$DEST"
