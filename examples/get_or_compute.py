"""The mint protocol from a Python application, with a client generated from proto/.

Generate the stubs once (from the repository root), then run against a server:

    pip install grpcio grpcio-tools
    mkdir -p gen
    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \
        proto/mintcache/v1/cache.proto
    PYTHONPATH=gen python examples/get_or_compute.py 127.0.0.1:50051

get_or_compute() below is what every mintcache client does with a read's outcome: HIT and
STALE are served from the cache, REFRESH and MISS compute the value and store it with the
read's lease token, PENDING waits a little and reads again. However many callers ask at once,
an expiring key is recomputed once.
"""

import os
import random
import sys
import threading
import time

import grpc

from mintcache.v1 import cache_pb2 as pb
from mintcache.v1 import cache_pb2_grpc


def get_or_compute(cache, key, ttl_seconds, compute, metadata, pending_retries=10):
    """Returns the cached value of `key`, computing and storing it when the server says so."""
    for _ in range(pending_retries + 1):
        r = cache.Get(pb.GetRequest(key=key), metadata=metadata)
        if r.outcome in (pb.OUTCOME_HIT, pb.OUTCOME_STALE):
            return r.value
        if r.outcome == pb.OUTCOME_PENDING:
            # Another caller is filling the key: wait a little (jittered) and read again.
            time.sleep(0.02 + random.random() * 0.03)
            continue
        # REFRESH (this caller won the refresh of a stale value) or MISS: compute and store.
        value = compute()
        cache.Set(
            pb.SetRequest(key=key, value=value, ttl_seconds=ttl_seconds, lease_token=r.lease_token),
            metadata=metadata,
        )
        return value
    # Still pending after the retries: compute without caching rather than wait forever.
    return compute()


def main(target):
    loads = []
    lock = threading.Lock()

    def load_profile():
        """Stands in for a slow data source: counts how often it is asked."""
        with lock:
            loads.append(1)
            n = len(loads)
        time.sleep(0.05)
        return ('{"id":42,"name":"Ada","load":%d}' % n).encode()

    # A key space of its own, so that the example starts cold on every run.
    metadata = [("x-cache-version", f"example-py-{os.getpid()}")]
    with grpc.insecure_channel(target) as channel:
        cache = cache_pb2_grpc.CacheStub(channel)
        for round_ in (1, 2, 3):
            value = get_or_compute(cache, b"profile:42", 60, load_profile, metadata)
            print(f"read {round_}: {value.decode()} (loads so far: {len(loads)})")

        # Soft purge: ten concurrent readers, one recompute; the others get the stale value.
        cache.Invalidate(pb.InvalidateRequest(key=b"profile:42"), metadata=metadata)
        errors = []

        def reader():
            try:
                get_or_compute(cache, b"profile:42", 60, load_profile, metadata)
            except grpc.RpcError as e:
                errors.append(e)

        readers = [threading.Thread(target=reader) for _ in range(10)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        if errors:
            raise errors[0]
        print(f"after an invalidation and 10 concurrent readers: loads so far: {len(loads)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
