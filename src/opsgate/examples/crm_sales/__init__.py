"""CRM / sales ops: an in-memory CRM (accounts, contacts, deals, activity, a shared inbox),
its tools, its policy, and a planner + executor agent, with the `crm_sales_v1` suite."""

from pathlib import Path

POLICY_PATH = Path(__file__).with_name("policy.yaml")
SUITE_PATH = Path(__file__).with_name("crm_sales_v1.yaml")

__all__ = ["POLICY_PATH", "SUITE_PATH"]
