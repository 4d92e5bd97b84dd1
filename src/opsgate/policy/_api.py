"""Loading a policy and deciding: the functions most callers need."""

from __future__ import annotations

from pathlib import Path

from opsgate.contracts import Toolbelt
from opsgate.errors import ContractError, PolicyError
from opsgate.policy._compiled import CompiledPolicy
from opsgate.policy._decision import Decision, ProposedCall, RunState
from opsgate.policy._document import PolicyDocument
from opsgate.policy._load import content_version, parse_policy

__all__ = ["decide", "load_policy", "shadow_file"]


def load_policy(
    source: str | Path, toolbelt: Toolbelt | None = None, *, text: str | None = None
) -> CompiledPolicy:
    """Read, validate, bind and compile a policy, and the shadow candidate each workflow
    names (`CompiledPolicy.shadow`), bound to the same tools.

    Args:
        source: A YAML file, or a name for ``text``.
        toolbelt: The tools the policy governs; defaults to the module named by the
            document's ``toolbelt`` key.
        text: YAML to use instead of reading ``source``.

    Raises:
        PolicyError: anything wrong in the document or between it and the toolbelt; a
            shadow candidate that is missing, invalid or without the workflow (naming the
            workflow's ``shadow`` key, and the candidate's own problem).
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
    policy = CompiledPolicy(document, toolbelt, version=content_version(document), source=name)
    shadows: dict[str, CompiledPolicy] = {}
    compiled: dict[Path, CompiledPolicy] = {}  # one candidate file is compiled once
    for workflow in document.workflows:
        path = shadow_file(document, name, workflow)
        if path is not None:
            shadows[workflow] = _candidate(path, workflow, toolbelt, name, compiled)
    if shadows:
        policy._set_shadows(shadows)
    return policy


def shadow_file(document: PolicyDocument, source: str | Path, workflow: str) -> Path | None:
    """The file the workflow's ``shadow`` names, relative to the policy file's folder (None:
    no workflow of that name, or no shadow)."""
    spec = document.workflows.get(workflow)
    if spec is None or spec.shadow is None:
        return None
    path = Path(spec.shadow).expanduser()
    return path if path.is_absolute() else Path(source).parent / path


def _candidate(
    path: Path,
    workflow: str,
    toolbelt: Toolbelt,
    source: str,
    compiled: dict[Path, CompiledPolicy],
) -> CompiledPolicy:
    """The candidate at ``path`` bound to ``toolbelt`` (its own ``shadow`` keys are not
    followed: a candidate never acts, so neither does a candidate of it)."""
    location = f"workflows.{workflow}.shadow"
    found = compiled.get(path)
    if found is None:
        if not path.is_file():
            raise PolicyError(
                f"the shadow candidate `{path}` does not exist (the path is relative to the "
                "policy file)",
                source=source,
                location=location,
            )
        try:
            document, name = parse_policy(path)
            found = CompiledPolicy(
                document, toolbelt, version=content_version(document), source=name
            )
        except PolicyError as exc:
            raise PolicyError(
                f"the shadow candidate is not a usable policy: {exc}",
                source=source,
                location=location,
            ) from None
        compiled[path] = found
    if not found.has_workflow(workflow):
        known = ", ".join(sorted(found.document.workflows)) or "none"
        raise PolicyError(
            f"the shadow candidate `{path}` has no workflow `{workflow}` (it has: {known})",
            source=source,
            location=location,
        )
    return found


def decide(policy: CompiledPolicy, call: ProposedCall, state: RunState) -> Decision:
    """Decide one proposed call under ``policy`` (pure; see `CompiledPolicy.decide`)."""
    return policy.decide(call, state)
