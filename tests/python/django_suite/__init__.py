"""Django's own test suites on MintCache (see run.py). The modules here are copied into the
test directory of Django's sdist and run by its tests/runtests.py; they are not pytest tests."""
