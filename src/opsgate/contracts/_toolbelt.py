"""`Toolbelt`: the set of contracts an agent may be offered."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from opsgate.contracts._tool import ToolContract
from opsgate.errors import ContractError, InvalidToolCall


class Toolbelt:
    """An ordered, name-unique collection of `ToolContract`.

    Example::

        belt = Toolbelt([get_order_status, refund])
        belt["refund"].scope  # "write"
    """

    __slots__ = ("_tools",)

    def __init__(self, tools: Iterable[ToolContract] = ()) -> None:
        self._tools: dict[str, ToolContract] = {}
        for contract in tools:
            self.add(contract)

    def add(self, contract: ToolContract) -> None:
        """Add a contract; names are unique."""
        if not isinstance(contract, ToolContract):
            raise ContractError(
                f"`{contract!r}` is not a tool contract; decorate the function with @tool"
            )
        if contract.name in self._tools:
            raise ContractError(f"two tools are named `{contract.name}`")
        self._tools[contract.name] = contract

    @classmethod
    def from_module(cls, module: str | ModuleType) -> Toolbelt:
        """Collect every `ToolContract` defined at the top level of a module.

        Args:
            module: A module or its import path, e.g. ``"opsgate.examples.support_triage.tools"``.
        """
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except (ImportError, ValueError, TypeError) as exc:  # "" or ".x": no module name
                raise ContractError(f"cannot import tools module `{module}`: {exc}") from None
        found = list(dict.fromkeys(v for v in vars(module).values() if isinstance(v, ToolContract)))
        if not found:
            raise ContractError(f"module `{module.__name__}` defines no @tool functions")
        return cls(found)

    def get(self, name: str) -> ToolContract:
        """The contract named ``name``.

        Raises:
            InvalidToolCall: code ``unknown_tool``, listing the tools that exist.
        """
        try:
            return self._tools[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._tools)) or "none"
            raise InvalidToolCall(
                "unknown_tool", f"unknown tool `{name}`; available tools: {known}"
            ) from None

    def find(self, name: str) -> ToolContract | None:
        """The contract named ``name``, or None."""
        return self._tools.get(name) if isinstance(name, str) else None

    def __getitem__(self, name: str) -> ToolContract:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[ToolContract]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        """Tool names, in the order they were added."""
        return list(self._tools)

    def openai_tools(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The tools (all, or those named) in OpenAI's ``tools`` format."""
        chosen = self._tools.values() if names is None else (self.get(n) for n in names)
        return [c.openai_schema() for c in chosen]
