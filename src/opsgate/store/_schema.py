"""The database schema (SQLAlchemy Core). Alembic migrations create it; see README.md."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
_BIGINT = BigInteger().with_variant(Integer(), "sqlite")

#: The schema version this code writes; a database at a newer one is refused.
SCHEMA_VERSION = "0014"

meta = Table(
    "opsgate_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("workflow", String(128), nullable=False),
    Column("invoker", String(256), nullable=False),
    Column("agent_id", String(256), nullable=False),
    Column("policy_version", String(128), nullable=False),
    Column("model_route", Text),
    Column("status", String(32), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("tool_calls", Integer, nullable=False, default=0),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("elapsed_s", Float),
    # "production", or "eval" for an agent-eval trial (left out of production roll-ups)
    Column("purpose", String(16), nullable=False, server_default="production"),
    Index("ix_runs_workflow_started", "workflow", "started_at"),
    # `0014`: the console's runs list, newest first, and its keyset cursor
    Index("ix_runs_purpose_started", "purpose", "started_at", "run_id"),
    Index("ix_runs_status_started", "status", "started_at", "run_id"),
)

# The audit trail. Append-only (triggers reject UPDATE and DELETE). `body` holds the exact
# canonical bytes that were hashed; `chain_hash` = SHA-256(previous chain_hash || leaf hash).
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", _BIGINT, primary_key=True, autoincrement=False),
    Column("run_id", String(64), nullable=False),
    Column("type", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("chain_hash", LargeBinary(32), nullable=False),
    Index("ix_audit_events_run", "run_id", "seq"),
)

# Signed tree heads over the first `tree_size` events (RFC 6962 Merkle root), append-only.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", _BIGINT, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("chain_hash", LargeBinary(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("frontier", Text, nullable=False),
)

# Archived audit segments: events below `upto` were exported (with their signed checkpoint)
# to the named archive before they were dropped. Append-only.
audit_retention = Table(
    "audit_retention",
    metadata,
    Column("upto", _BIGINT, primary_key=True, autoincrement=False),
    Column("archived_at", Float, nullable=False),
    Column("archive_sha256", String(64), nullable=False),
    Column("archive_name", Text, nullable=False),
)

AUDIT_TABLES = ("audit_events", "audit_checkpoints", "audit_retention")

# Debug traces: OpenTelemetry spans, redacted before they were stored. Expire by retention.
spans = Table(
    "spans",
    metadata,
    Column("span_id", String(16), primary_key=True),
    Column("trace_id", String(32), nullable=False),
    Column("parent_span_id", String(16)),
    Column("run_id", String(64)),
    Column("name", String(256), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attributes", Text, nullable=False),
    Column("events", Text, nullable=False),
    Index("ix_spans_run", "run_id", "start_ns"),
    Index("ix_spans_trace", "trace_id"),
    Index("ix_spans_start", "start_ns"),
)

# The durable approval queue: the exact proposed call and the run's state to resume from.
approvals = Table(
    "approvals",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("call_id", String(64), nullable=False),
    Column("workflow", String(128), nullable=False),
    Column("invoker", String(256), nullable=False),
    Column("agent_id", String(256), nullable=False),
    Column("tool", String(128), nullable=False),
    Column("args", Text, nullable=False),
    Column("decision", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("approver", String(256)),
    Column("reason", Text),
    Column("requested_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_at", Float),
    Column("executed_at", Float),
    Column("run_state", Text, nullable=False),
    Index("ix_approvals_status", "status", "requested_at"),
    Index("ix_approvals_run", "run_id"),
    Index("ix_approvals_decided", "decided_at", "request_id"),  # `0014`: the inbox's history
)

# Requests to stop a live run (the console's stop button, `opsgate runs stop`): the gateway
# running the run polls them and ends the run before its next call (`interrupted`).
run_stops = Table(
    "run_stops",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("actor", String(256), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("requested_at", Float, nullable=False),
    Column("honoured_at", Float),
    Index("ix_run_stops_open", "honoured_at"),
)

# Quotas across runs: each allowed call's share of each quota it counts against, reserved
# before it runs (calls in flight count), released if it never runs.
quota_uses = Table(
    "quota_uses",
    metadata,
    Column("id", _BIGINT, primary_key=True, autoincrement=True),
    Column("quota_key", String(256), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("amount", Float, nullable=False),
    Column("at", Float, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("call_id", String(64), nullable=False),
    Column("released", Boolean, nullable=False, default=False),
    # covers the window's tally (`0012`): a reservation sums the index alone
    Index("ix_quota_uses_window", "quota_key", "subject", "released", "at", "amount"),
    Index("ix_quota_uses_call", "run_id", "call_id"),
)

# Each workflow's autonomy stage as promoted and demoted (`opsgate autonomy`), with its
# history: the latest row is in force; the policy file's stage holds until there is one.
workflow_stages = Table(
    "workflow_stages",
    metadata,
    Column("id", _BIGINT, primary_key=True, autoincrement=True),
    Column("workflow", String(128), nullable=False),
    Column("stage", String(32), nullable=False),
    Column("previous", String(32), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("evidence", Text, nullable=False, default="[]"),
    Column("policy_version", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_workflow_stages_workflow", "workflow", "id"),
)

# The cost ledger: one row per model call (and per tool call, at zero model cost), written
# by the cost recorder from the gateway's `model_call` / `tool_result` events.
cost_entries = Table(
    "cost_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("workflow", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # "model" or "tool"
    Column("role", String(32)),
    Column("model", String(256)),
    Column("tool", String(128)),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cached_input_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("estimate", Boolean, nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("cache_hit", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("purpose", String(16), nullable=False, server_default="production"),
    Index("ix_cost_entries_run", "run_id"),
    Index("ix_cost_entries_purpose_at", "purpose", "at"),
    Index("ix_cost_entries_workflow_at", "workflow", "at"),
)

# Responses of calls that are safe to cache (same model and messages, temperature 0,
# read-only role), keyed by the SHA-256 of the request's canonical JSON.
model_cache = Table(
    "model_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("model", String(256), nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("hits", Integer, nullable=False),
)

# Evaluation reports (agent-eval), whole documents plus the headline metrics the dashboard
# lists without parsing them. Saved once per report_id (idempotent).
eval_reports = Table(
    "eval_reports",
    metadata,
    Column("report_id", String(64), primary_key=True),
    Column("suite", String(128), nullable=False),
    Column("suite_version", Integer, nullable=False),
    Column("model_router", Text, nullable=False),
    Column("trials", Integer, nullable=False),
    Column("shard", String(32)),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("success_rate", Float, nullable=False),
    Column("cost_per_successful_task", Float),
    Column("unsafe_attempts", Integer, nullable=False),
    Column("gate_passed", Boolean, nullable=False),
    Column("document", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_eval_reports_suite_started", "suite", "started_at"),
)

# Accepted baselines: one row per acceptance, history kept; the latest row of a suite is
# the baseline `agent-eval assert` compares with.
eval_baselines = Table(
    "eval_baselines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("suite", String(128), nullable=False),
    Column("report_id", String(64), ForeignKey("eval_reports.report_id"), nullable=False),
    Column("accepted_at", Float, nullable=False),
    Column("accepted_by", String(256), nullable=False),
    Column("note", Text, nullable=False),
    Index("ix_eval_baselines_suite_accepted", "suite", "accepted_at"),
)

# Human review verdicts on finished eval tasks, one per reviewer and trial (a reviewer who
# changes their mind overwrites their own verdict).
eval_reviews = Table(
    "eval_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("report_id", String(64), ForeignKey("eval_reports.report_id"), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("trial", Integer, nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("reviewer", String(256), nullable=False),
    Column("notes", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("report_id", "task_id", "trial", "reviewer", name="uq_eval_reviews_item"),
)

# The console's access tokens (`opsgate tokens`, `opsgate serve`): only the SHA-256 of each
# token is kept (the token is shown once, at creation); a revoked token keeps its row.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("revoked_at", Float),
    Column("revoked_by", String(256)),
    Index("ix_api_tokens_name", "name"),
)

# Alert rules per workflow (`opsgate alerts`, the console's Alerts page, `0011`). A webhook's
# secret is never stored: `webhook_secret_env` names the environment variable holding it. A
# deleted rule keeps its row (who deleted it, and when).
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("rule_id", _BIGINT, primary_key=True, autoincrement=True),
    Column("workflow", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("window_days", Integer, nullable=False),
    Column("sinks", String(64), nullable=False),  # comma-separated: console, log, webhook
    Column("webhook_url", Text),
    Column("webhook_secret_env", String(128)),
    Column("renotify_minutes", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("updated_at", Float),
    Column("updated_by", String(256)),
    Column("deleted_at", Float),
    Column("deleted_by", String(256)),
    Column("demote_to", String(32)),  # `0012`: a firing demotes the workflow to this stage
    Index("ix_alert_rules_workflow", "workflow"),
)

# Per-workflow budget overrides set in the console (admin, `0013`): a NULL field keeps the
# router file's value; who set it and when (the audit trail keeps every change).
workflow_budgets = Table(
    "workflow_budgets",
    metadata,
    Column("workflow", String(128), primary_key=True),
    Column("max_cost_per_task", Float),
    Column("daily_spend", Float),
    Column("set_by", String(256), nullable=False),
    Column("set_at", Float, nullable=False),
)

# Every webhook delivery attempt of a firing (`0011`): the host only (a URL's path or query
# may hold a token), the HTTP status or the error's kind, the attempt number.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", _BIGINT, primary_key=True, autoincrement=True),
    Column("rule_id", _BIGINT, nullable=False),
    Column("firing_id", String(32), nullable=False),
    Column("workflow", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("url_host", String(256), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("ok", Boolean, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_alert_deliveries_rule_at", "rule_id", "at"),
)
