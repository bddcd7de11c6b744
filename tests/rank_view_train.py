"""`soraplan train` under torchrun where one rank sees another run directory (a node whose mount differs).

Usage: torchrun ... tests/rank_view_train.py TRAIN_ARGS... with SORAPLAN_TEST_VIEW_RANK=K and
SORAPLAN_TEST_VIEW_DIR=DIR: rank K gets `--run-dir DIR` instead of the given one; other ranks run unchanged.
"""

import os
import sys

from soraplan.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if os.environ.get("RANK") == os.environ.get("SORAPLAN_TEST_VIEW_RANK"):
        args[args.index("--run-dir") + 1] = os.environ["SORAPLAN_TEST_VIEW_DIR"]
    sys.argv = ["soraplan", "train", *args]
    main()
