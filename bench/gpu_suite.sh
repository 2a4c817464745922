#!/bin/bash
# The CUDA tests and the GPU benchmarks of issue 15 in one command, for a lent GPU machine (~6 min on
# one H200). From the project root, with the snakemake/faiss wheels carried (../shared/gpu):
#
#   bash bench/gpu_suite.sh "$OUT" .whl          # on the GPU machine; JSON + logs land in $OUT
#   bash bench/gpu_suite.sh /tmp/suite "" quick   # a smoke test of the script on a CPU (small sizes)
#
# Each step has its own time limit and is recorded in $OUT/summary.txt with its exit status, so one
# failing step does not hide the others. Steps: pytest of tests/test_cuda.py (bf16 + channels_last vs
# fp32, GPU search vs faiss, the teacher cache on the GPU, pinned in-memory loading); bench/gpu_check.py
# (AMP, NetVLAD parity, cluster, PCA, kNN at Pitts250k scale, DDP with nccl on one GPU); extraction
# from 480x640 JPEG files (VGG16 and MobileNetV3-Large, K=64), decoded by PIL in the loader workers and
# by nvjpeg (--decode torchvision); evaluation at Pitts250k scale and with
# 250k database images; the demo city rendered, then a training, a distillation step and the refresh
# share (bench/bench_steps.py); extraction at the demo size.
set -uo pipefail
out=${1:?usage: bash bench/gpu_suite.sh OUT_DIR [WHEELS_DIR] [quick]}
whl=${2:-}
quick=${3:-}
mkdir -p "$out"
if [ -n "$whl" ] && [ -d "$whl" ]; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$whl"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "$quick" ]; then
    dev=cpu big=96x128 n=64 db=20000 q=500 preset=tiny workers=1
else
    dev=cuda big=480x640 n=2000 db=83952 q=8280 preset=demo workers=15
fi

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    rc=$?
    printf '%-16s rc=%-3s %4s s  %s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$*" | tee -a "$out/summary.txt"
}

python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', 'python', sys.version.split()[0])" \
    | tee "$out/summary.txt"
step pytest_cuda 180 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
step gpu_check 300 python3 bench/gpu_check.py ${quick:+--quick} --out "$out/gpu_check.json"
step extract_big 300 python3 bench/bench_extract.py --device "$dev" --size "$big" --images "$n" \
    --models vgg16:64 mobilenetv3_large:64 --workers "$workers" --batch-size 32 --data "$work/jpeg" \
    --json "$out/extract_$big.json"
step extract_nvjpeg 240 python3 bench/bench_extract.py --device "$dev" --size "$big" --images "$n" \
    --models vgg16:64 mobilenetv3_large:64 --workers 4 --batch-size 32 --data "$work/jpeg" --decode torchvision \
    --json "$out/extract_${big}_nvjpeg.json"
step eval_pitts250k 180 python3 bench/bench_eval.py --device "$dev" --db "$db" --queries "$q" --dtype float16 \
    --tmp "$work" --json "$out/eval_pitts250k.json"
step eval_250k 180 python3 bench/bench_eval.py --device "$dev" --db $(( db * 3 )) --queries "$q" --dtype float16 \
    --tmp "$work" --json "$out/eval_250k.json"
step synth 180 python3 -m wakd synth --preset "$preset" --seed 0 --workers "$(nproc)" --out "$work/city"
step steps 420 python3 bench/bench_steps.py --city "$work/city" --device "$dev" --precision auto \
    --workers "$(( workers < 4 ? workers : 4 ))" ${quick:+--epochs 1} --json "$out/steps_$dev.json"
step extract_demo 180 python3 bench/bench_extract.py --device "$dev" --size 96x128 --images 1314 \
    --models resnet18:16 resnet18:16:width=0.375 --workers "$workers" --batch-size 64 --json "$out/extract_demo_96x128.json"
cat "$out/summary.txt"
