"""The build of the package: pure Python (pyproject.toml says what) plus its native transport,
``mintcache._native``, a Rust extension (native/, on the mintcache-client crate) built with
setuptools-rust when a Rust toolchain is there.

``MINTCACHE_NATIVE`` (environment, at install time):
  ``auto`` (default)  build the extension; without a Rust toolchain (or if it fails to build),
                      install without it: the clients then use the grpcio transport.
  ``require``         build it or fail the install (CI does this).
  ``off``             do not build it.
"""

import glob
import os

from setuptools import setup
from setuptools_rust import Binding, RustExtension

# An in-tree build keeps build/lib*/ between installs, and the wheel takes whatever is there:
# a native transport left from an earlier build must not ride along when this one is not built
# (no Rust now, or it failed to build). It is made again when it builds.
for stale in glob.glob(
    os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "build", "lib*", "mintcache", "_native*"
    )
):
    os.remove(stale)

mode = os.environ.get("MINTCACHE_NATIVE", "auto").strip().lower()
if mode not in ("auto", "require", "off"):
    raise SystemExit(f"MINTCACHE_NATIVE={mode!r}: expected auto, require or off")

rust_extensions = []
if mode != "off":
    rust_extensions.append(
        RustExtension(
            "mintcache._native",
            path="native/Cargo.toml",
            binding=Binding.PyO3,
            optional=mode == "auto",
        )
    )

setup(rust_extensions=rust_extensions, zip_safe=False)
