#!/bin/bash
# demo.sh CITY COMMIT : the default demo pipeline of COMMIT on city seed CITY, in its own worktree, 1 core
set -e
city=$1; commit=$2; wt=/tmp/demo_c$city
cd /work/main
git worktree remove --force $wt 2>/dev/null || true
git worktree add --detach $wt $commit >/dev/null
mkdir -p $wt/resources/synthetic
cp -r /work/main/resources/synthetic/demo-seed$city $wt/resources/synthetic/
printf 'synthetic:\n  seed: %s\n' $city > $wt/city.yaml
cd $wt
export PYTHONPATH=$wt
start=$(date +%s)
snakemake --cores 1 --configfile city.yaml > /work/runs/aug/demo_c$city.log 2>&1
echo "demo city $city done in $(( $(date +%s) - start )) s" >> /work/runs/aug/status
