"""One LPL layer on random data: weight norms, variance and NaN checks (same as `lpl sanity`)."""

import sys

from lpl.cli import main

if __name__ == "__main__":
    sys.exit(main(["sanity", *sys.argv[1:]], owns_process=True))
