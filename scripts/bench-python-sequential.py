"""Latency of sequential GetMany calls from the Python client (one call at a time), as
docs/BENCHMARKS.md reports it.

Usage: python scripts/bench-python-sequential.py [ENDPOINT]   (default 127.0.0.1:50051)
Needs the mintcache package (pip install ./client/python) and a running server.
"""

import statistics
import sys
import time

import mintcache

VALUE = b"x" * 64
CALLS = 2000


def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    with mintcache.Client(endpoint, version="bench-python-sequential") as client:
        for n in (1, 10, 100):
            keys = [f"k{i}" for i in range(n)]
            client.set_many([mintcache.SetItem(k, VALUE, ttl=300) for k in keys])
            for _ in range(200):  # warm-up
                client.get_many(keys)
            took = []
            for _ in range(CALLS):
                started = time.perf_counter()
                found = client.get_many(keys)
                took.append(time.perf_counter() - started)
                if not all(lookup.value == VALUE for lookup in found):
                    raise SystemExit(f"a key of {keys} did not hit")
            took.sort()
            print(
                f"sequential GetMany of {n} keys: median {statistics.median(took) * 1e6:.0f} us, "
                f"p99 {took[int(len(took) * 0.99)] * 1e6:.0f} us, max {took[-1] * 1e6:.0f} us "
                f"({CALLS} calls, all hits)"
            )


if __name__ == "__main__":
    main()
