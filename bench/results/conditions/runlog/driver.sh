#!/bin/bash
# recipe trials for issue 26: demo teacher on city seed 0, validation per condition
cd /work/main
T="wakd train --dataset synthetic --root resources/synthetic/demo-seed0 --arch resnet18 --num-clusters 16 --clusters results/ablation/city0/seed0/clusters/teacher_desc_cen.hdf5 --size 96x128 --epochs 6 --lr-step 3 --optimizer adam --lr 0.0003 --weight-decay 0 --loss triplet_sq --tuples-per-batch 8 --neg-num 5 --neg-pool 300 --cache-size 800 --queries-per-epoch 800 --seed 0 --precision fp32 --threads 1 --workers 1"
O=/work/runs/aug/runs
run() { name=$1; shift; [ -f $O/$name/history.csv ] && [ $(wc -l < $O/$name/history.csv) -ge 7 ] && return; $T --out-dir $O/$name --overwrite "$@" > /work/runs/aug/$name.log 2>&1; echo "$name done $(date)" >> /work/runs/aug/status; }
run t_base &
run t_jit --jitter 0.7 0.7 0.7 0.5 &
wait
run t_rel --jitter 0.7 0.7 0.7 0.5 --relight 0.5 &
run t_relbal --jitter 0.7 0.7 0.7 0.5 --relight 0.5 --query-balance condition &
wait
echo all done >> /work/runs/aug/status
