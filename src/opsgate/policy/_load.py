"""Reading a policy file into a validated `PolicyDocument` (`opsgate.documents`: the one
YAML reader), its problems as `PolicyError` naming the file, the line and the dotted key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson

from opsgate import documents
from opsgate.documents import (
    DocumentProblem,
    error_location,
    line_of,
    read_document,
    validate_document,
)
from opsgate.errors import PolicyError
from opsgate.policy._document import PolicyDocument

__all__ = ["content_version", "error_location", "line_of", "parse_policy", "read_yaml"]


def read_yaml(text: str, source: str, error: type[PolicyError] = PolicyError) -> Any:
    """Parse YAML text (`opsgate.documents.read_yaml`), its problems as ``error``."""
    try:
        return documents.read_yaml(text, source)
    except DocumentProblem as exc:
        raise error(exc.detail, source=exc.source) from None


def parse_policy(source: str | Path, *, text: str | None = None) -> tuple[PolicyDocument, str]:
    """Read and validate a policy document.

    Args:
        source: A file path, or a name for ``text`` when it is given.
        text: The YAML itself, when it does not come from a file.

    Returns:
        The document and the name of its source.

    Raises:
        PolicyError: unreadable file, YAML error, unknown key, wrong type, invalid value.
    """
    try:
        name, text = read_document(source, text)
        data = documents.read_yaml(text, name)
        shape = "a policy is a mapping with `version` and `workflows`"
        doc = validate_document(
            PolicyDocument, data, text=text, source=name, kind="policy", shape=shape
        )
    except DocumentProblem as exc:
        raise PolicyError(exc.detail, source=exc.source, location=exc.location) from None
    return doc, name


#: Keys added after policies were in use: a tool's `scope` and `impact`, the resources
#: `provenance` trusts or not.
_LATER_TOOL_KEYS = ("scope", "impact")
_LATER_PROVENANCE_KEYS = ("trusted_resources", "untrusted_resources")


def content_version(doc: PolicyDocument) -> str:
    """The policy's version: its declared version plus a hash of its meaning.

    Comments and formatting do not change the hash; any change to a rule does. A workflow's
    ``shadow`` does not either: the candidate never acts, so a candidate that is this file
    with the stage raised has the version this file will have once promoted.
    """
    data = doc.model_dump(mode="json", by_alias=True)
    for workflow in data["workflows"].values():
        # a shadow candidate never decides: naming one leaves the policy's meaning as it was
        workflow.pop("shadow", None)
        # keys added later count only when set: a policy that does not use them keeps the
        # version it had before they existed
        for tool in (workflow.get("tools") or {}).values():
            for key in _LATER_TOOL_KEYS if tool is not None else ():
                if tool.get(key) is None:
                    tool.pop(key, None)
        provenance = workflow.get("provenance") or {}
        for key in _LATER_PROVENANCE_KEYS:
            if not provenance.get(key):
                provenance.pop(key, None)
    try:
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer past 64 bits (a cap of 2**64): the same JSON, but exact
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        canonical = text.encode()
    return f"{doc.version}+{hashlib.sha256(canonical).hexdigest()[:12]}"
