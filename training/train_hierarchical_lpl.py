"""Two-layer layer-local LPL on synthetic shapes, 1024 -> 128 -> 64 (same as `lpl train-hierarchical`)."""

import sys

from lpl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-hierarchical", *sys.argv[1:]], owns_process=True))
