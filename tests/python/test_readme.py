"""The README's Python and Django sections against the package: their code blocks run as a new
user would run them (with none of the environment variables they read set), and their tables
name every Django option and every client method there is."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness import ROOT
from mintcache import Client
from mintcache.django import MintCache
from mintcache.django.options import OPTION_NAMES

README = (ROOT / "README.md").read_text()
ENVIRONMENT = ("MINTCACHE_TOKEN", "MINTCACHE_ADMIN_TOKEN", "RELEASE")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


@pytest.fixture()
def bare_environment(monkeypatch):
    """The environment of a first try: none of the variables the snippets read."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def test_python_snippet_runs_as_written(bare_environment, cluster, space):
    """The client snippet, with its endpoints pointed at the test server and the functions it
    leaves to the reader defined: no KeyError for an unset MINTCACHE_TOKEN, and it works."""
    block = python_blocks(section("Python"))[0]
    assert '["10.0.0.1:50051", "10.0.0.2:50051"]' in block
    block = block.replace('["10.0.0.1:50051", "10.0.0.2:50051"]', repr([cluster.addr]))
    block = block.replace('version="r42"', f"version={space!r}")
    built = []
    scope = {
        "load_profile": lambda n: f"profile {n}".encode(),
        "build_report": lambda: built.append(True),
        "print": lambda *args: None,
    }
    exec(compile(block, "README.md (Python)", "exec"), scope)
    assert scope["profile"] == b"profile 42"
    assert scope["lookup"].value == b'{"name":"Ada"}'
    assert built == [True]
    scope["cache"].close()


def test_django_snippet_configures_without_its_environment(bare_environment, cluster):
    block = python_blocks(section("Django"))[0]
    scope = {"os": os}
    exec(compile(block, "README.md (Django)", "exec"), scope)
    config = scope["CACHES"]["default"]
    cache = MintCache(cluster.addr, {**config, "LOCATION": cluster.addr})
    cache.set("readme", "works")
    assert cache.get("readme") == "works"
    assert "mintcache.django" in scope["INSTALLED_APPS"]
    assert "mintcache.django.CacheDebugMiddleware" in scope["MIDDLEWARE"]


def test_options_table_names_every_option():
    django = section("Django")
    start = django.index("| `OPTIONS` key |")
    table = django[start : django.index("\n\n", start)]
    rows = re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_, `]+)`)? \|", table, re.MULTILINE)
    documented = set()
    for first, rest in rows:
        documented.add(first)
        documented.update(name.strip(" `") for name in rest.split(",") if name.strip(" `"))
    assert documented == OPTION_NAMES


def test_method_table_names_every_public_client_method():
    rows = re.findall(r"^\| `(\w+)\(", section("Python"), re.MULTILINE)
    combined = re.findall(r"^\| `\w+\([^`]*\)`, `(\w+)\(", section("Python"), re.MULTILINE)
    documented = set(rows) | set(combined)
    public = {
        name
        for name in dir(Client)
        if not name.startswith("_") and callable(getattr(Client, name))
    } - {"close"}
    assert public <= documented, public - documented


def test_readme_links_to_operations_section():
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    assert "\n## Python and Django clients when the service fails\n" in operations
    assert "docs/OPERATIONS.md#python-and-django-clients-when-the-service-fails" in README


def test_measure_outage_script_exists():
    assert Path(ROOT / "tests" / "python" / "measure_outage.py").is_file()
    assert "tests/python/measure_outage.py" in (ROOT / "docs" / "OPERATIONS.md").read_text()
