"""IT help desk: an in-memory department, its tools, its policy, a router + lanes agent (and
a planner + executor), with the `it_helpdesk` evaluation suite and its held-out split (plan
quality scored apart from outcome)."""

from pathlib import Path

POLICY_PATH = Path(__file__).with_name("policy.yaml")
SUITE_PATH = Path(__file__).with_name("it_helpdesk.yaml")

__all__ = ["POLICY_PATH", "SUITE_PATH"]
