"""A small Django project configured with mintcache's backend and debug middleware, for the
Python tests (tests/python). Its settings come from MINTCACHE_TEST_* variables set by conftest."""
