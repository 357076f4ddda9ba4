#!/usr/bin/env bash
# Multi-GPU training check on one host (run from the repository root on a 2-GPU machine):
# videomamba_small, 16 frames at 224x224, bf16, torchrun + DDP (NCCL, NVLink multicast off).
# 1) 1 GPU with gradient accumulation 2 vs 2 GPUs, same global batch 16: losses step by step;
# 2) throughput per GPU at 1 and 2 GPUs with the same per-GPU batch (8);
# 3) kill rank 1 mid-run: the job must end non-zero; then resume from the last checkpoint.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-multigpu_out}
DATA=/tmp/clips
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 benchmarks/make_frame_clips.py $DATA --clips 192 --frames 16 --size 224
COMMON=(--config configs/synthetic.yaml --no-progress --resume none data.synthetic=false data.root=$DATA
        data.train=$DATA/list.txt data.val=$DATA/list.txt data.img_size=224 data.clip_len=16 data.stride=1
        "data.scale=[0.8, 1.0]" data.flip=false data.num_workers=6 model.name=videomamba_small
        train.precision=bf16 train.drop_path=0.0 train.shuffle_check=false train.log_every=1
        train.eval_every_epochs=0 optim.epochs=3 optim.lr=3e-4 optim.warmup_epochs=0.0)
run() {  # name nproc extra...
  local name=$1 nproc=$2; shift 2
  local start=$(date +%s)
  torchrun --nproc_per_node $nproc --master_port $((29500 + RANDOM % 500)) -m videomamba train "${COMMON[@]}" \
    train.output=$OUT/$name "$@" > $OUT/$name.log 2>&1
  local rc=$?
  echo "$name: exit $rc after $(( $(date +%s) - start )) s"
}
mkdir -p $OUT
run one_gpu_accum2 1 train.batch_size=16 train.micro_batch=8 train.max_steps=16
run two_gpu 2 train.batch_size=16 train.micro_batch=8 train.max_steps=16
run one_gpu_b8 1 train.batch_size=8 train.micro_batch=8 train.max_steps=24
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def steps(name):
    return [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if '"type": "step"' in l]
a, b = steps("one_gpu_accum2"), steps("two_gpu")
print("| step | 1 GPU, accumulation 2 | 2 GPUs | difference |\n|---|---|---|---|")
for x, y in zip(a, b):
    print(f"| {x['step']} | {x['loss']:.5f} | {y['loss']:.5f} | {abs(x['loss'] - y['loss']):.1e} |")
one, two = steps("one_gpu_b8"), b
# the running average of the clips/s since the epoch began, at its last logged step (loader start-up included)
r1 = one[-1]["clips_per_s"]  # 24 steps: the whole first epoch
r2 = next(x for x in two if x["step"] == 12)["clips_per_s"]  # 12 steps: the whole first epoch
print(f"\nclips/s (average over the first epoch, loader start-up included): 1 GPU batch 8: {r1:.2f}; 2 GPUs batch 8 each: {r2:.2f} "
      f"= {r2 / 2:.2f} per GPU; scaling efficiency {r2 / (2 * r1):.2f}")
PY
# 3) kill rank 1 mid-run, then resume
torchrun --nproc_per_node 2 --master_port 29977 -m videomamba train "${COMMON[@]}" train.output=$OUT/killed \
  train.batch_size=16 train.micro_batch=8 train.max_steps=40 train.save_every_steps=4 > $OUT/killed.log 2>&1 &
LAUNCHER=$!
for i in $(seq 1 600); do [ -f $OUT/killed/last.pt ] && break; sleep 0.5; done
sleep 2
VICTIM=$(for p in $(pgrep -f "output=$OUT/killed"); do tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx RANK=1 && echo $p; done | head -1)
echo "killing rank 1 (pid $VICTIM) at $(date +%s)"; KILLED_AT=$(date +%s)
kill -9 $VICTIM
wait $LAUNCHER; RC=$?
echo "torchrun exit code $RC, $(( $(date +%s) - KILLED_AT )) s after the kill"
python3 -c "import torch; s=torch.load('$OUT/killed/last.pt', weights_only=True); print('last checkpoint: step', s['global_step'])"
torchrun --nproc_per_node 2 --master_port 29978 -m videomamba train "${COMMON[@]}" train.output=$OUT/killed \
  train.batch_size=16 train.micro_batch=8 train.max_steps=12 train.save_every_steps=4 --resume auto > $OUT/resumed.log 2>&1
echo "resume exit $?"; grep -h "resumed from" $OUT/resumed.log | head -2
