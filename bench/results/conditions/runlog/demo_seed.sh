#!/bin/bash
# demo_seed.sh CITY SEED COMMIT CORES : the default demo of COMMIT on city CITY with config seed SEED, own worktree
set -e
city=$1; seed=$2; commit=$3; cores=$4; wt=/tmp/demo_c${city}_s$seed
cd /work/main
git worktree remove --force $wt 2>/dev/null || true
git worktree add --detach $wt $commit >/dev/null
mkdir -p $wt/resources/synthetic
cp -r /work/main/resources/synthetic/demo-seed$city $wt/resources/synthetic/
printf 'synthetic:\n  seed: %s\nseed: %s\n' $city $seed > $wt/city.yaml
cd $wt
export PYTHONPATH=$wt
start=$(date +%s)
snakemake --cores $cores --configfile city.yaml > /work/runs/aug/demo_c${city}_s$seed.log 2>&1
echo "demo city $city seed $seed ($commit) done in $(( $(date +%s) - start )) s" >> /work/runs/aug/status
