"""Example workflows that ship with opsgate (used by `opsgate demo` and the eval suites)."""

#: Each workflow is its own package (`opsgate.examples.support_triage`, ...).
__all__: list[str] = []
