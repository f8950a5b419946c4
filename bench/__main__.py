"""``python -m bench [--quick]``: every benchmark, numbers beside their baselines.

- registrations: HTTP registrations/s (2 workers vs 1) and decision time at
  10 vs 100,000 registrations (vs a full replay without snapshots);
- dynamodb_capacity: RCU/WCU per command (vs the seed's state-based design);
- dynamodb_appends: appends/s with 1, 4 and 16 writers (vs 1 writer).
"""

from __future__ import annotations

import sys

from bench import dynamodb_appends, dynamodb_capacity, registrations

if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    registrations.main(sys.argv[1:])
    print()
    dynamodb_capacity.main()
    print()
    dynamodb_appends.main(["--seconds", "2" if quick else "5"])
