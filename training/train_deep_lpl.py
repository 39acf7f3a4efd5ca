"""Layer-local VGG-11 LPL on CIFAR-10 or shapes (same as `lpl train-deep`); runs under torchrun too."""

import sys

from lpl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-deep", *sys.argv[1:]], owns_process=True))
