"""oldchoice.py, and soft_ranking_kd's logits as before 1b1144e (its own einsum): refactor check only.

    python oldchoice_oldkd.py CHECKOUT
"""

import pathlib
import sys

from oldchoice import CLUSTER_NEW, CLUSTER_OLD, EXTRACT_NEW, EXTRACT_OLD, patch

KD_NEW = ("        return torch.cat(tuple_scores(d[:, 0], d[:, 1], d[:, 2:], temperature), 1)"
          "  # the SARE losses' scores\n")
KD_OLD = '        return torch.einsum("bd,bnd->bn", d[:, 0], d[:, 1:]) / temperature\n'

if __name__ == "__main__":
    root = pathlib.Path(sys.argv[1])
    patch(root / "wakd/stages/cluster.py", CLUSTER_NEW, CLUSTER_OLD)
    patch(root / "wakd/stages/extract.py", EXTRACT_NEW, EXTRACT_OLD)
    patch(root / "wakd/training/distill.py", KD_NEW, KD_OLD)
