"""Single-layer LPL on CIFAR-10, 3072 -> 128 (same as `lpl train`)."""

import sys

from lpl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], owns_process=True))
