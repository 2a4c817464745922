#!/bin/bash
# The CUDA tests and the GPU benchmarks of issue 15 in one command, for a lent GPU machine (~6 min on
# one H200). From the project root, with the snakemake/faiss wheels carried (../shared/gpu):
#
#   bash bench/gpu_suite.sh "$OUT" .whl          # on the GPU machine
#   bash bench/gpu_suite.sh /tmp/suite "" quick   # a smoke test of the script on a CPU (small sizes)
#
# $OUT receives two files (the device tool returns at most 8): summary.txt (one line per step: exit
# status, seconds, command) and suite.tar.gz (every step's log and JSON), both rewritten after each
# step, so a call cut short still returns what was finished. The whole suite keeps to SUITE_S seconds
# (default 540: one device call may run 600); each step has its own limit within that, and a step that
# would start with 20 s or less left is skipped. One failing step does not hide the others.
# Steps, in this order: pytest of tests/test_cuda.py (bf16 + channels_last vs fp32, GPU search vs faiss,
# the teacher cache on the GPU, a resumed training on the GPU, pinned in-memory loading); extraction from
# 480x640 JPEG files (VGG16 and MobileNetV3-Large, K=64), decoded by PIL in the loader workers and by
# nvjpeg (--decode torchvision); evaluation at Pitts250k scale; the demo city rendered, then training,
# distillation and the refresh share (bench/bench_steps.py); bench/gpu_check.py (AMP, NetVLAD parity,
# cluster, PCA, kNN at Pitts250k scale, DDP with nccl on one GPU); evaluation with 250k database images;
# extraction at the demo size.
set -uo pipefail
out=${1:?usage: bash bench/gpu_suite.sh OUT_DIR [WHEELS_DIR] [quick]}
whl=${2:-}
quick=${3:-}
budget=${SUITE_S:-540}
deadline=$(( $(date +%s) + budget ))
mkdir -p "$out"
work=$(mktemp -d)
res="$work/res"
mkdir -p "$res"
trap 'rm -rf "$work"' EXIT
if [ -n "$whl" ] && [ -d "$whl" ]; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$whl"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ -n "$quick" ]; then
    dev=cpu big=96x128 n=64 db=20000 q=500 preset=tiny workers=1
else
    dev=cuda big=480x640 n=2000 db=83952 q=8280 preset=demo workers=15
fi

pack() {  # $OUT/summary.txt and $OUT/suite.tar.gz from what $res holds now
    tar -czf "$out/.suite.tar.gz" -C "$res" . && mv "$out/.suite.tar.gz" "$out/suite.tar.gz"
    cp "$res/summary.txt" "$out/summary.txt"
}

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2 t0 rc left
    shift 2
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -le 20 ]; then
        printf '%-16s skipped: %s s left of the suite'"'"'s %s s\n' "$name" "$left" "$budget" | tee -a "$res/summary.txt"
        pack
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    t0=$(date +%s)
    timeout "$limit" "$@" > "$res/$name.log" 2>&1
    rc=$?
    printf '%-16s rc=%-3s %4s s  %s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$*" | tee -a "$res/summary.txt"
    pack
}

python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', 'python', sys.version.split()[0], \
'cudnn.allow_tf32', torch.backends.cudnn.allow_tf32, 'matmul.allow_tf32', torch.backends.cuda.matmul.allow_tf32)" \
    | tee "$res/summary.txt"
# the paths never run before first, the figures of issue 15 next, what was measured once before last
step pytest_cuda 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
step extract_big 150 python3 bench/bench_extract.py --device "$dev" --size "$big" --images "$n" \
    --models vgg16:64 mobilenetv3_large:64 --workers "$workers" --batch-size 32 --data "$work/jpeg" \
    --json "$res/extract_$big.json"
step extract_nvjpeg 120 python3 bench/bench_extract.py --device "$dev" --size "$big" --images "$n" \
    --models vgg16:64 mobilenetv3_large:64 --workers 4 --batch-size 32 --data "$work/jpeg" --decode torchvision \
    --json "$res/extract_${big}_nvjpeg.json"
step eval_pitts250k 120 python3 bench/bench_eval.py --device "$dev" --db "$db" --queries "$q" --dtype float16 \
    --tmp "$work" --json "$res/eval_pitts250k.json"
step synth 90 python3 -m wakd synth --preset "$preset" --seed 0 --workers "$(nproc)" --out "$work/city"
step steps 240 python3 bench/bench_steps.py --city "$work/city" --device "$dev" --precision auto \
    --workers "$(( workers < 4 ? workers : 4 ))" ${quick:+--epochs 1} --json "$res/steps_$dev.json"
step gpu_check 150 python3 bench/gpu_check.py ${quick:+--quick} --out "$res/gpu_check.json"
step eval_250k 120 python3 bench/bench_eval.py --device "$dev" --db $(( db * 3 )) --queries "$q" --dtype float16 \
    --tmp "$work" --json "$res/eval_250k.json"
step extract_demo 90 python3 bench/bench_extract.py --device "$dev" --size 96x128 --images 1314 \
    --models resnet18:16 resnet18:16:width=0.375 --workers "$workers" --batch-size 64 \
    --json "$res/extract_demo_96x128.json"
cat "$out/summary.txt"
