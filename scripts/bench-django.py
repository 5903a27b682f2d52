"""Latency as a Django application sees it: Django's cache API on mintcache.django.MintCache
against Django's own PyMemcacheCache on the same memcached, one call at a time, plus the bare
calls under it. Run by scripts/bench-django.sh (which starts the servers); prints one JSON
object per row on stdout.

    python scripts/bench-django.py --memcached 127.0.0.1:P --mintcache 127.0.0.1:Q \
        [--noop 127.0.0.1:R] [--proxy 127.0.0.1:S] [--label after] [--calls 3000] \
        [--warmup 200] [--rounds 3]

With ``--proxy`` (a twemproxy in front of the same memcached), PyMemcacheCache through it is
measured too: what a proxy between Django and memcached costs on the same machine, with no
gRPC in the way.

Each row: ``warmup`` calls, then ``calls`` timed calls (perf_counter_ns around each), split into
``rounds`` that alternate with the other rows of the same operation, so that a change of load on
the machine during the run falls on every row alike. The value is a small pickled dict.
Needs Django, pymemcache and the mintcache package in this interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

VALUE = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "author"], "score": 3.14}


def percentile(sorted_ns: list[int], p: float) -> float:
    index = min(len(sorted_ns) - 1, round(p / 100.0 * (len(sorted_ns) - 1)))
    return sorted_ns[index] / 1000.0


#: Process CPU time (every thread of this process) per row, in ns, by the last measure().
CPU: dict[object, int] = {}


def measure(calls: dict[object, object], warmup: int, count: int, rounds: int) -> dict:
    """Times each callable ``count`` times after ``warmup`` calls, in ``rounds`` alternating
    rounds; returns the durations (ns) of each, and leaves each one's process CPU in CPU."""
    clock = time.perf_counter_ns
    cpu = time.process_time_ns
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    took: dict = {name: [] for name in calls}
    CPU.clear()
    CPU.update({name: 0 for name in calls})
    per_round = max(1, count // rounds)
    for r in range(rounds):
        n = per_round if r < rounds - 1 else count - per_round * (rounds - 1)
        for name, fn in calls.items():
            out = took[name]
            cpu_started = cpu()
            for _ in range(n):
                started = clock()
                fn()
                out.append(clock() - started)
            CPU[name] += cpu() - cpu_started
    return took


async def measure_async(calls: dict, warmup: int, count: int, rounds: int) -> dict:
    """measure() for coroutine functions, awaited one at a time in the running event loop."""
    clock = time.perf_counter_ns
    cpu = time.process_time_ns
    for fn in calls.values():
        for _ in range(warmup):
            await fn()
    took: dict = {name: [] for name in calls}
    CPU.clear()
    CPU.update({name: 0 for name in calls})
    per_round = max(1, count // rounds)
    for r in range(rounds):
        n = per_round if r < rounds - 1 else count - per_round * (rounds - 1)
        for name, fn in calls.items():
            out = took[name]
            cpu_started = cpu()
            for _ in range(n):
                started = clock()
                await fn()
                out.append(clock() - started)
            CPU[name] += cpu() - cpu_started
    return took


def row(label: str, what: str, target: str, took: list[int], **extra: object) -> dict:
    took = sorted(took)
    return {
        "label": label,
        "what": what,
        "target": target,
        "calls": len(took),
        "p50_us": round(percentile(took, 50), 1),
        "p99_us": round(percentile(took, 99), 1),
        **extra,
    }


#: The name of PyMemcacheCache through twemproxy in the rows.
THROUGH_PROXY = "PyMemcacheCache through twemproxy"


def setup_django(
    memcached: str, mintcache: str, transport: str | None, proxy: str | None
) -> None:
    import django
    from django.conf import settings

    options = {"APP_VERSION": "bench-" + uuid.uuid4().hex[:8]}
    if transport is not None:
        options["TRANSPORT"] = transport
    caches = {
        "pymemcache": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": memcached,
            "KEY_PREFIX": "bench-" + uuid.uuid4().hex[:8],
        },
        "mintcache": {
            "BACKEND": "mintcache.django.MintCache",
            "LOCATION": mintcache,
            "OPTIONS": options,
        },
    }
    if proxy is not None:
        caches["proxy"] = {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": proxy,
            "KEY_PREFIX": "bench-" + uuid.uuid4().hex[:8],
        }
    settings.configure(CACHES=caches, USE_TZ=True)
    django.setup()


def django_rows(label: str, args: argparse.Namespace) -> list[dict]:
    from django.core.cache import caches

    backends = {
        "PyMemcacheCache": caches["pymemcache"],
        "MintCache": caches["mintcache"],
    }
    if args.proxy is not None:
        backends[THROUGH_PROXY] = caches["proxy"]
    keys10 = [f"many:{i}" for i in range(10)]
    for cache in backends.values():
        cache.set("hit", VALUE, 3600)
        cache.set_many({k: VALUE for k in keys10}, 3600)
        cache.set("counter", 0, 3600)
        cache.delete("absent")
        if cache.get("hit") != VALUE or len(cache.get_many(keys10)) != 10:
            raise SystemExit(f"{label}: the values did not come back from {cache!r}")

    def never() -> object:
        raise AssertionError("get_or_set computed on a hit")

    operations = {
        "get (hit)": lambda c: lambda: c.get("hit"),
        "get (miss)": lambda c: lambda: c.get("absent"),
        "set": lambda c: lambda: c.set("written", VALUE, 3600),
        "get_many (10 keys)": lambda c: lambda: c.get_many(keys10),
        "get_or_set (hit)": lambda c: lambda: c.get_or_set("hit", never, 3600),
        "incr": lambda c: lambda: c.incr("counter"),
    }
    rows = []
    for operation, make in operations.items():
        took = measure(
            {name: make(cache) for name, cache in backends.items()},
            args.warmup,
            args.calls,
            args.rounds,
        )
        for name, durations in took.items():
            rows.append(
                row(label, f"Django {operation}", name, durations, op=operation)
            )
    return rows


class _InstantTransport:
    """Answers every call at once with a canned answer (no network): what is left of a Django
    call over it is the backend's and the client's own Python work."""

    name = "instant"

    def __init__(self) -> None:
        import pickle

        from mintcache.v1 import cache_pb2 as pb

        value = pickle.dumps(VALUE, pickle.HIGHEST_PROTOCOL)
        self.answers = {
            "Get": pb.GetResponse(outcome=1, value=value, flags=1, ttl_seconds=3600),
            "Set": pb.SetResponse(stored=True),
        }

    # The transport interface of this package (mintcache._transport) ...
    def call(self, index, method, request, timeout, headers):
        return self.answers[method], False

    # ... and grpcio's stub interface, for packages from before it.
    def __getattr__(self, method):
        answer = self.answers[method]

        class _Call:
            @staticmethod
            def initial_metadata():
                return ()

        class _Method:
            @staticmethod
            def with_call(request, timeout=None, metadata=None):
                return answer, _Call

        return _Method


def own_rows(label: str, args: argparse.Namespace) -> list[dict]:
    """Django get (hit) and set on MintCache over an instant transport: the backend's own
    work per call, without any I/O."""
    from django.core.cache import caches

    cache = caches["mintcache"]
    client = cache._client()
    channels = client._channels
    instant = _InstantTransport()
    if hasattr(channels, "transport"):
        real, channels.transport = channels.transport, instant
    else:  # the grpcio-only package: its stubs
        real, channels.stubs = channels.stubs, [instant] * len(channels.stubs)
    # CPU time of this thread (the work itself, whatever else the machine runs), per call,
    # averaged over batches of 30 calls (a clock read costs about as much as a small call).
    batch = 30
    clock = time.thread_time_ns
    calls = {
        "get (hit)": lambda: cache.get("hit"),
        "set": lambda: cache.set("written", VALUE, 3600),
    }
    took: dict[str, list[int]] = {name: [] for name in calls}
    try:
        for fn in calls.values():
            for _ in range(args.warmup):
                fn()
        for _ in range(max(1, args.calls // batch)):
            for name, fn in calls.items():
                started = clock()
                for _ in range(batch):
                    fn()
                took[name].append((clock() - started) // batch)
    finally:
        if hasattr(channels, "transport"):
            channels.transport = real
        else:
            channels.stubs = real
    if cache.get("hit") != VALUE:
        raise SystemExit("the instant transport did not answer with the value")
    return [
        row(
            label,
            f"Django {op}, instant transport: CPU µs per call",
            "MintCache",
            t,
            own=op,
        )
        for op, t in took.items()
    ]


def bare_rows(label: str, args: argparse.Namespace) -> list[dict]:
    """Bare Get calls, one at a time, to mintcache and to the no-op server: over grpcio (the
    generated stub as the package used it, and its leanest form: bytes in and out, no
    metadata, no deadline), over the native transport, and the asyncio forms of both."""
    import asyncio

    import grpc
    import grpc.aio
    from mintcache.v1 import cache_pb2 as pb
    from mintcache.v1 import cache_pb2_grpc

    try:
        from mintcache import _native
    except ImportError:
        _native = None
    version = "bench-bare-" + uuid.uuid4().hex[:8]
    metadata = (("x-cache-version", version),)
    request = pb.GetRequest(key=b"hit")
    body = request.SerializeToString()
    path = "/mintcache.v1.Cache/Get"
    targets = {"mintcache": args.mintcache}
    if args.noop:
        targets["no-op server"] = args.noop
    calls: dict = {}
    keep = []
    for target, address in targets.items():
        channel = grpc.insecure_channel(address)
        keep.append(channel)
        stub = cache_pb2_grpc.CacheStub(channel)
        stub.Set(
            pb.SetRequest(key=b"hit", value=b"x" * 64, ttl_seconds=3600),
            metadata=metadata,
        )
        lean = channel.unary_unary(
            path, request_serializer=None, response_deserializer=None
        )
        calls[("grpcio: generated stub, metadata, deadline", target)] = (
            lambda stub=stub: stub.Get(request, metadata=metadata, timeout=5.0)
        )
        calls[("grpcio: bytes, no metadata, no deadline", target)] = lambda lean=lean: (
            lean(body)
        )
        if _native is not None:
            native = _native.Channel(address)
            keep.append(native)
            native_md = _native.Metadata(list(metadata))
            calls[("native: Channel.call, metadata, deadline", target)] = (
                lambda native=native, md=native_md: pb.GetResponse.FromString(
                    native.call(path, body, md, 5.0)[0]
                )
            )
    took = measure(calls, args.warmup, args.calls, args.rounds)
    rows = [
        row(
            label,
            what,
            target,
            durations,
            cpu_us=round(CPU[(what, target)] / len(durations) / 1000, 1),
        )
        for (what, target), durations in took.items()
    ]

    # asyncio: channels belong to the loop that uses them, so they are made inside it.
    def make_async() -> dict:
        async_calls: dict = {}
        for target, address in targets.items():
            stub = cache_pb2_grpc.CacheStub(grpc.aio.insecure_channel(address))
            async_calls[("grpc.aio: generated stub, metadata, deadline", target)] = (
                lambda stub=stub: stub.Get(request, metadata=metadata, timeout=5.0)
            )
            if _native is not None:
                from mintcache._transport import AioNativeTransport

                native = AioNativeTransport([address], None)

                async def native_call(native=native):
                    return await native.call(0, "Get", request, 5.0, metadata)

                async_calls[("native asyncio: the transport's call", target)] = native_call
        return async_calls

    async def run_async() -> dict:
        return await measure_async(make_async(), args.warmup, args.calls, args.rounds)

    took = asyncio.run(run_async())
    rows += [
        row(
            label,
            what,
            target,
            durations,
            cpu_us=round(CPU[(what, target)] / len(durations) / 1000, 1),
        )
        for (what, target), durations in took.items()
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memcached", required=True)
    parser.add_argument("--mintcache", required=True)
    parser.add_argument("--noop")
    parser.add_argument(
        "--proxy", help="a twemproxy in front of the same memcached (PyMemcacheCache through it)"
    )
    parser.add_argument("--label", default="after")
    parser.add_argument(
        "--transport", help="MintCache OPTIONS['TRANSPORT'] (new package only)"
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--bare", action="store_true", help="also time the bare Get calls"
    )
    args = parser.parse_args()

    import mintcache

    setup_django(args.memcached, args.mintcache, args.transport, args.proxy)
    info = {
        "label": args.label,
        "what": "package",
        "mintcache": os.path.dirname(mintcache.__file__),
        "transport": getattr(mintcache, "TRANSPORT", "grpcio"),
        "python": sys.version.split()[0],
    }
    print(json.dumps(info), flush=True)
    for r in django_rows(args.label, args):
        print(json.dumps(r), flush=True)
    for r in own_rows(args.label, args):
        print(json.dumps(r), flush=True)
    if args.bare:
        for r in bare_rows(args.label, args):
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
