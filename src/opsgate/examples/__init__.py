"""Example workflows that ship with opsgate (used by `opsgate demo` and the eval suites)."""
