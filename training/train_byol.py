"""BYOL baseline with only the first convolution trained (same as `lpl train-byol`)."""

import sys

from lpl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-byol", *sys.argv[1:]], owns_process=True))
