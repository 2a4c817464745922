#!/bin/bash
# tiny.sh NAME COMMIT [PATCH.py] : the tiny pipeline of COMMIT (optionally patched), in its own worktree
set -e
name=$1; commit=$2; wt=/tmp/tiny_$name
cd /work/main
git worktree remove --force $wt 2>/dev/null || true
git worktree add --detach $wt $commit >/dev/null
if [ -n "$3" ]; then python $3 $wt; fi
cd $wt
export PYTHONPATH=$wt
start=$(date +%s)
snakemake --cores 1 --configfile .test/config/config.yaml > /work/runs/cmp/$name.log 2>&1
echo "tiny $name done in $(( $(date +%s) - start )) s" >> /work/runs/cmp/status
