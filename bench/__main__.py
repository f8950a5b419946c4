"""``python -m bench``: every benchmark, numbers beside their baselines."""

from __future__ import annotations

import sys

from bench import registrations

if __name__ == "__main__":
    registrations.main(sys.argv[1:])
