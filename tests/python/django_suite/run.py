"""Runs Django's own cache, session and cache-middleware test suites on MintCache, the way
Django's CI runs them: ``tests/runtests.py`` of Django's sdist, with MintCache as the
``default`` and ``other`` caches, against a real mintcache-server over two real memcached
processes (started here with tests/python/harness.py).

    python tests/python/django_suite/run.py DJANGO_SOURCE_DIR [runtests.py arguments...]

DJANGO_SOURCE_DIR is an unpacked sdist of the Django version installed next to mintcache
(client/python/django-suite.sh fetches it). Exit status: runtests.py's; it is also a failure
when no test ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import CLIENT_TOKEN, Memcached, Server, server_env  # noqa: E402

#: What runs: MintCache versions of the cache suites (cache_suite.py), and Django's session
#: suites that store sessions in the default cache.
LABELS = [
    "cache.mintcache_suite",
    "sessions_tests.tests.CacheSessionTests",
    "sessions_tests.tests.CacheDBSessionTests",
    "sessions_tests.tests.CacheDBSessionWithTimeZoneTests",
]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0]).resolve()
    tests = source / "tests"
    if not (tests / "runtests.py").is_file():
        print(f"django-suite: {tests}/runtests.py not found", file=sys.stderr)
        return 2
    shutil.copyfile(HERE / "cache_suite.py", tests / "cache" / "mintcache_suite.py")
    shutil.copyfile(HERE / "settings.py", tests / "mintcache_suite_settings.py")

    memcached = [Memcached(), Memcached()]
    try:
        server = Server(server_env(memcached))
        try:
            env = {
                **os.environ,
                "MINTCACHE_SUITE_LOCATION": server.addr,
                "MINTCACHE_SUITE_TOKEN": CLIENT_TOKEN,
                "PYTHONDONTWRITEBYTECODE": "1",
            }
            command = [
                sys.executable,
                "runtests.py",
                "--settings=mintcache_suite_settings",
                "--parallel=1",
                "--noinput",
                *argv[1:],
                *LABELS,
            ]
            print(f"django-suite: {' '.join(command[1:])} (in {tests})", flush=True)
            # runtests.py reports on stderr: passed through as it comes, and kept.
            process = subprocess.Popen(command, cwd=tests, env=env, stderr=subprocess.PIPE)
            assert process.stderr is not None
            report = bytearray()
            while chunk := os.read(process.stderr.fileno(), 4096):
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()
                report += chunk
            status = process.wait()
        finally:
            server.stop()
    finally:
        for m in memcached:
            m.stop()
    ran = re.search(rb"^Ran (\d+) tests?", report, re.MULTILINE)
    if status == 0 and (ran is None or int(ran.group(1)) == 0):
        print("django-suite: no test ran", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
