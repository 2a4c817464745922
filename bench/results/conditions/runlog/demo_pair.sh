#!/bin/bash
# demo_pair.sh CITY SEED OLD NEW : the default demo of commits OLD and NEW on city CITY, config seed SEED,
# side by side (1 core each), each in its own clean worktree with PYTHONPATH=<worktree>

city=$1; seed=$2
run_one() {
  commit=$1; wt=/tmp/demo_c${city}_s${seed}_$commit
  cd /work/main
  git worktree remove --force $wt 2>/dev/null || true
  git worktree add --detach $wt $commit >/dev/null
  mkdir -p $wt/resources/synthetic
  cp -r /work/main/resources/synthetic/demo-seed$city $wt/resources/synthetic/
  printf 'synthetic:\n  seed: %s\nseed: %s\n' $city $seed > $wt/city.yaml
  cd $wt
  start=$(date +%s)
  PYTHONPATH=$wt snakemake --cores 1 --configfile city.yaml > /work/runs/aug/demo_c${city}_s${seed}_$commit.log 2>&1; rc=$?
  echo "demo city $city seed $seed ($commit) rc $rc done in $(( $(date +%s) - start )) s" >> /work/runs/aug/status
}
run_one $3 &
run_one $4 &
wait
