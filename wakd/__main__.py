"""``python -m wakd``: the ``wakd`` command (also what ``torchrun -m wakd`` runs on every rank)."""

from wakd.cli import entry

entry()
