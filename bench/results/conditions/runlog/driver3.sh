#!/bin/bash
cd /work/main
T="wakd train --dataset synthetic --root resources/synthetic/demo-seed0 --arch resnet18 --num-clusters 16 --size 96x128 --epochs 6 --lr-step 3 --optimizer adam --lr 0.0003 --weight-decay 0 --loss triplet_sq --tuples-per-batch 8 --neg-num 5 --neg-pool 300 --cache-size 800 --queries-per-epoch 800 --seed 0 --precision fp32 --threads 1 --workers 1"
CN=/work/runs/aug/clusters_norm_city0.hdf5
O=/work/runs/aug/runs
run() { name=$1; shift; [ -f $O/$name/history.csv ] && [ $(wc -l < $O/$name/history.csv) -ge 7 ] && return; $T --out-dir $O/$name --overwrite "$@" > /work/runs/aug/$name.log 2>&1; echo "$name done $(date)" >> /work/runs/aug/status; }
while pgrep -f driver2.sh >/dev/null; do sleep 10; done
run t_norm_bal --clusters $CN --input-norm instance --query-balance condition &
run t_norm_rel --clusters $CN --input-norm instance --relight 0.5 &
wait
echo round3 done >> /work/runs/aug/status
