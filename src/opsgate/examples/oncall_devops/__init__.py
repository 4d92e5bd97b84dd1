"""On-call / DevOps: an in-memory production estate (services, deploys, flags, incidents,
alerts, runbooks, status pages), its tools, its policy, and a planner + executor agent, with
the `oncall_devops_v1` suite."""

from pathlib import Path

POLICY_PATH = Path(__file__).with_name("policy.yaml")
SUITE_PATH = Path(__file__).with_name("oncall_devops_v1.yaml")

__all__ = ["POLICY_PATH", "SUITE_PATH"]
