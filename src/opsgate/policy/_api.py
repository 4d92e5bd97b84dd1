"""Loading a policy and deciding: the functions most callers need."""

from __future__ import annotations

from pathlib import Path

from opsgate.contracts import Toolbelt
from opsgate.errors import ContractError, PolicyError
from opsgate.policy._compiled import CompiledPolicy
from opsgate.policy._decision import Decision, ProposedCall, RunState
from opsgate.policy._load import content_version, parse_policy

__all__ = ["decide", "load_policy"]


def load_policy(
    source: str | Path, toolbelt: Toolbelt | None = None, *, text: str | None = None
) -> CompiledPolicy:
    """Read, validate, bind and compile a policy.

    Args:
        source: A YAML file, or a name for ``text``.
        toolbelt: The tools the policy governs; defaults to the module named by the
            document's ``toolbelt`` key.
        text: YAML to use instead of reading ``source``.

    Raises:
        PolicyError: anything wrong in the document or between it and the toolbelt.
    """
    document, name = parse_policy(source, text=text)
    if toolbelt is None:
        if document.toolbelt is None:
            raise PolicyError(
                "no toolbelt: pass one, or name the tools module in the policy's `toolbelt` key",
                source=name,
            )
        try:
            toolbelt = Toolbelt.from_module(document.toolbelt)
        except ContractError as exc:
            raise PolicyError(str(exc), source=name, location="toolbelt") from None
    return CompiledPolicy(document, toolbelt, version=content_version(document), source=name)


def decide(policy: CompiledPolicy, call: ProposedCall, state: RunState) -> Decision:
    """Decide one proposed call under ``policy`` (pure; see `CompiledPolicy.decide`)."""
    return policy.decide(call, state)
