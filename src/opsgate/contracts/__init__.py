"""Typed tool contracts: what the gate knows about a tool before it runs."""

from opsgate.contracts._context import ToolContext
from opsgate.contracts._normalize import Normalize
from opsgate.contracts._schema import contract_from_schema
from opsgate.contracts._tool import SCOPES, Impact, Scope, ToolContract, Trust, build_contract, tool
from opsgate.contracts._toolbelt import Toolbelt

__all__ = [
    "SCOPES",
    "Impact",
    "Normalize",
    "Scope",
    "ToolContext",
    "ToolContract",
    "Toolbelt",
    "Trust",
    "build_contract",
    "contract_from_schema",
    "tool",
]
