#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment, from the working directory (the checkout):
# installs wakd from the checkout, without touching the dependencies conda already provides.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
