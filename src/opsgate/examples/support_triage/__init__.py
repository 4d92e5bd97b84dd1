"""Customer-support triage: an in-memory shop, its tools and its policy."""

from pathlib import Path

POLICY_PATH = Path(__file__).with_name("policy.yaml")
ROUTER_PATH = Path(__file__).with_name("router.yaml")

__all__ = ["POLICY_PATH", "ROUTER_PATH"]
