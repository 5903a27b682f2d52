"""A Python client generated from proto/ with grpcio-tools, against a real mintcache server.

Usage: python interop.py HOST:PORT   (with the generated stubs on PYTHONPATH)

Runs Set/Get/Delete with version metadata, a REFRESH round with a lease token, and error
code checks. Prints one line per check and exits non-zero on the first failure.
"""

import sys

import grpc

from mintcache.v1 import cache_pb2, cache_pb2_grpc


def md(version):
    return (("x-cache-version", version),)


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name} {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {name}", flush=True)


def expect_error(name, code, call):
    try:
        call()
    except grpc.RpcError as e:
        check(name, e.code() == code, f"got {e.code()}: {e.details()}")
        return
    check(name, False, "no error")


def main(target):
    with grpc.insecure_channel(target) as channel:
        cache = cache_pb2_grpc.CacheStub(channel)
        O = cache_pb2

        # Set / Get / Delete, in the key space of version py1.
        r = cache.Set(O.SetRequest(key=b"user:42", value=b'{"name":"Ada"}', ttl_seconds=60), metadata=md("py1"))
        check("set stored", r.stored)
        r = cache.Get(O.GetRequest(key=b"user:42"), metadata=md("py1"))
        check("get hit", r.outcome == O.OUTCOME_HIT and r.value == b'{"name":"Ada"}', r)
        check("ttl reported", 0 < r.ttl_seconds <= 60, r.ttl_seconds)
        r = cache.Get(O.GetRequest(key=b"user:42"), metadata=md("py2"))
        check("other version misses", r.outcome == O.OUTCOME_MISS, r)
        r = cache.Delete(O.DeleteRequest(key=b"user:42"), metadata=md("py1"))
        check("delete", r.deleted)
        r = cache.Get(O.GetRequest(key=b"user:42"), metadata=md("py1"))
        check("get after delete misses", r.outcome == O.OUTCOME_MISS, r)

        # A REFRESH round: invalidate, the next reader wins with a lease, others get STALE,
        # the winner's Set with the lease is stored, the same lease again is refused.
        cache.Set(O.SetRequest(key=b"page", value=b"v1", ttl_seconds=300), metadata=md("py1"))
        r = cache.Invalidate(O.InvalidateRequest(key=b"page"), metadata=md("py1"))
        check("invalidate", r.invalidated)
        won = cache.Get(O.GetRequest(key=b"page"), metadata=md("py1"))
        check("refresh won", won.outcome == O.OUTCOME_REFRESH and won.value == b"v1", won)
        check("lease token given", len(won.lease_token) > 0)
        r = cache.Get(O.GetRequest(key=b"page"), metadata=md("py1"))
        check("others get stale", r.outcome == O.OUTCOME_STALE and r.value == b"v1", r)
        r = cache.Set(O.SetRequest(key=b"page", value=b"v2", ttl_seconds=300, lease_token=won.lease_token), metadata=md("py1"))
        check("set with lease stored", r.stored)
        r = cache.Get(O.GetRequest(key=b"page"), metadata=md("py1"))
        check("hit after refresh", r.outcome == O.OUTCOME_HIT and r.value == b"v2", r)
        r = cache.Set(O.SetRequest(key=b"page", value=b"v3", ttl_seconds=300, lease_token=won.lease_token), metadata=md("py1"))
        check("outdated lease refused", not r.stored)

        # Error codes.
        expect_error("empty key is INVALID_ARGUMENT", grpc.StatusCode.INVALID_ARGUMENT,
                     lambda: cache.Get(O.GetRequest(key=b""), metadata=md("py1")))
        expect_error("bad version is INVALID_ARGUMENT", grpc.StatusCode.INVALID_ARGUMENT,
                     lambda: cache.Get(O.GetRequest(key=b"k"), metadata=md("not valid!")))
        expect_error("missing counter is NOT_FOUND", grpc.StatusCode.NOT_FOUND,
                     lambda: cache.Increment(O.IncrementRequest(key=b"nope", delta=1), metadata=md("py1")))
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
