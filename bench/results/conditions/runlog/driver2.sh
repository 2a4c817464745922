#!/bin/bash
cd /work/main
T="wakd train --dataset synthetic --root resources/synthetic/demo-seed0 --arch resnet18 --num-clusters 16 --size 96x128 --epochs 6 --lr-step 3 --optimizer adam --lr 0.0003 --weight-decay 0 --loss triplet_sq --tuples-per-batch 8 --neg-num 5 --neg-pool 300 --cache-size 800 --queries-per-epoch 800 --seed 0 --precision fp32 --threads 1 --workers 1"
C0=results/ablation/city0/seed0/clusters/teacher_desc_cen.hdf5
CN=/work/runs/aug/clusters_norm_city0.hdf5
O=/work/runs/aug/runs
run() { name=$1; shift; [ -f $O/$name/history.csv ] && [ $(wc -l < $O/$name/history.csv) -ge 7 ] && return; $T --out-dir $O/$name --overwrite "$@" > /work/runs/aug/$name.log 2>&1; echo "$name done $(date)" >> /work/runs/aug/status; }
# wait for round 1
while pgrep -f "out-dir $O/t_base" >/dev/null || pgrep -f "out-dir $O/t_jit" >/dev/null; do sleep 10; done
[ -f $CN ] || wakd cluster --arch resnet18 --input-norm instance --dataset synthetic --root resources/synthetic/demo-seed0 --split train --device cpu --precision fp32 --seed 0 --size 96x128 --workers 1 --num-images 500 --per-image 100 --num-clusters 16 --out $CN > /work/runs/aug/cluster_norm.log 2>&1
run t_rel --clusters $C0 --relight 0.5 &
run t_norm --clusters $CN --input-norm instance &
wait
echo round2 done >> /work/runs/aug/status
