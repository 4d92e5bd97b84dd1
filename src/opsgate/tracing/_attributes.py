"""Every span attribute, span event and environment variable of the tracing module, named once.

Names under ``gen_ai.*`` and ``error.type`` follow the OpenTelemetry GenAI semantic
conventions (status: Development). What the conventions do not name yet lives under
``opsgate.*`` until a standard name exists.

Content (tool arguments and results, the run's request and output, free-text messages that
can quote them) is opt-in, as the conventions say: it is recorded only when content capture
is on (`TRACE_CONTENT_ENV`), and then redacted. Codes (reason, rule, error type) and
identities are always recorded; on export, identities keep the person or service they name
(secrets scrubbed: `opsgate.redaction.ACTOR_FIELDS`), everything else is redacted.
"""

from __future__ import annotations

from typing import Final

from opsgate import environment

# -- environment variables -------------------------------------------------------------------

#: OTLP/HTTP endpoint for the traces. A base URL (``http://collector:4318``) gets
#: ``/v1/traces`` appended; a URL already ending in ``/v1/traces`` is used as it is. When
#: unset, `OTEL_TRACES_ENDPOINT_ENV` (used as it is) and then `OTEL_ENDPOINT_ENV` (a base
#: URL) are read; with none of the three set, nothing is exported by OTLP.
OTLP_ENDPOINT_ENV: Final = environment.OTLP_ENDPOINT_ENV
#: The standard OTel variable for the traces endpoint (a full URL, used as it is).
OTEL_TRACES_ENDPOINT_ENV: Final = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
#: The standard OTel variable for the OTLP endpoint of every signal (a base URL).
OTEL_ENDPOINT_ENV: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
#: Record content (tool arguments and results, request, output, messages) in spans:
#: ``1``/``true``/``yes``/``on`` (any case) turn it on; anything else, or unset, leaves it
#: off (the default, as the GenAI conventions say). Content is redacted either way.
TRACE_CONTENT_ENV: Final = environment.TRACE_CONTENT_ENV
#: The standard OTel service name; ``opsgate`` when unset.
OTEL_SERVICE_NAME_ENV: Final = "OTEL_SERVICE_NAME"

#: Values of `TRACE_CONTENT_ENV` that turn content capture on (compared lower-cased).
TRUE_VALUES: Final = frozenset({"1", "true", "yes", "on"})
#: Path of the traces signal in OTLP/HTTP.
OTLP_TRACES_PATH: Final = "/v1/traces"
#: Service name of the spans' resource when ``OTEL_SERVICE_NAME`` is unset.
DEFAULT_SERVICE_NAME: Final = "opsgate"
#: Instrumentation scope name of every span opsgate makes.
INSTRUMENTATION_SCOPE: Final = "opsgate"

# -- GenAI semantic conventions --------------------------------------------------------------

#: The operation: `OP_INVOKE_AGENT`, `OP_EXECUTE_TOOL` or `OP_CHAT`.
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
#: The model provider (``openai``, ``anthropic``, ...), on ``chat`` spans.
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
#: The model asked for (the provider's model id), on ``chat`` spans.
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
#: The sampling temperature a model call asked for.
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
#: The cap on output tokens a model call asked for.
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
#: The model that answered, as the provider named it (a dated snapshot, ...).
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
#: Why the model stopped (``stop``, ``tool_calls``, ``length``), as a one-item list.
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
#: Input (prompt) tokens of a model call.
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
#: Output (completion) tokens of a model call.
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
#: The tool's name, on ``execute_tool`` spans.
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
#: The tool call's id (the provider's, or the gateway's), on ``execute_tool`` spans.
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
#: The tool's type; opsgate tools are always `TOOL_TYPE_FUNCTION`.
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
#: The call's arguments as JSON text. Content: only with capture on, redacted.
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
#: The tool's result (text as it is, other data as JSON). Content: only with capture on.
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
#: The run id, on every span of a run (the store's ``spans.run_id`` is read from it).
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
#: The agent identity the run was started with.
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
#: The agent's name; the gateway knows only the identity, so it is the same value.
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
#: The policy workflow the run belongs to.
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
#: The run's request as GenAI input messages (JSON). Content: only with capture on.
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
#: The run's output as GenAI output messages (JSON). Content: only with capture on.
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
#: Why an operation failed: a tool's exception type (``KeyError``, ``ToolTimeout``), the
#: reason code of a denial (``arg_constraint``, ``unknown_tool``), ``approval_denied``, or
#: the escalation reason (``cap_exceeded``, ``approval_expired``). Set with status ERROR.
ERROR_TYPE: Final = "error.type"

#: `GEN_AI_OPERATION_NAME` of the span of a run.
OP_INVOKE_AGENT: Final = "invoke_agent"
#: `GEN_AI_OPERATION_NAME` of the span of a tool call.
OP_EXECUTE_TOOL: Final = "execute_tool"
#: `GEN_AI_OPERATION_NAME` of the span of a model call.
OP_CHAT: Final = "chat"
#: The operation of a planner's plan span (``plan {agent}``).
OP_PLAN: Final = "plan"
#: `GEN_AI_TOOL_TYPE` of opsgate tools (functions run in the process).
TOOL_TYPE_FUNCTION: Final = "function"

# -- guardrail decisions (the shape the GenAI conventions are converging on) -------------------
# Each decision of the gate is also an ``apply_guardrail`` span, a child of the tool call it
# guards, as the proposals for security guardrails in the GenAI conventions have it (the
# names are not final: they sit beside `DECISION`, which stays the stable record).

#: `GEN_AI_OPERATION_NAME` of a guardrail span.
OP_APPLY_GUARDRAIL: Final = "apply_guardrail"
#: Who decided: always `GUARDIAN_NAME`.
GEN_AI_GUARDIAN_NAME: Final = "gen_ai.guardian.name"
#: What was guarded: `TARGET_TOOL_CALL`.
GEN_AI_SECURITY_TARGET_TYPE: Final = "gen_ai.security.target.type"
#: The decision: ``allow``, ``deny`` or ``audit`` (a person must approve).
GEN_AI_SECURITY_DECISION_TYPE: Final = "gen_ai.security.decision.type"
#: The decision's machine-readable code: opsgate's reason (``untrusted_derivation``, ...).
GEN_AI_SECURITY_DECISION_CODE: Final = "gen_ai.security.decision.code"
#: The version of the policy that decided.
GEN_AI_SECURITY_POLICY_VERSION: Final = "gen_ai.security.policy.version"
#: The policy rule that decided.
GEN_AI_SECURITY_POLICY_ID: Final = "gen_ai.security.policy.id"
#: `GEN_AI_GUARDIAN_NAME` of opsgate's gate.
GUARDIAN_NAME: Final = "opsgate"
#: `GEN_AI_SECURITY_TARGET_TYPE` of a tool call.
TARGET_TOOL_CALL: Final = "tool_call"
#: The gate's effect as a guardrail decision type.
GUARDRAIL_DECISION: Final = {"allow": "allow", "deny": "deny", "needs_approval": "audit"}

# -- OpenInference (Arize Phoenix) and Langfuse ------------------------------------------------
# Phoenix reads OpenInference attributes; Langfuse reads the GenAI ones and these too
# (``input.value``/``output.value``, ``user.id``, ``session.id``). Content ones follow the
# same opt-in as the GenAI content attributes, and are redacted on export likewise.

#: AGENT, LLM, TOOL or GUARDRAIL.
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
#: The span of a run.
KIND_AGENT: Final = "AGENT"
#: The span of a model call.
KIND_LLM: Final = "LLM"
#: The span of a tool call.
KIND_TOOL: Final = "TOOL"
#: The span of a decision of the gate.
KIND_GUARDRAIL: Final = "GUARDRAIL"
#: A span's input (a run's request, a call's arguments). Content: only with capture on.
INPUT_VALUE: Final = "input.value"
#: `INPUT_VALUE`'s type: `MIME_TEXT` or `MIME_JSON`.
INPUT_MIME_TYPE: Final = "input.mime_type"
#: A span's output (a run's answer, a call's result). Content: only with capture on.
OUTPUT_VALUE: Final = "output.value"
#: `OUTPUT_VALUE`'s type.
OUTPUT_MIME_TYPE: Final = "output.mime_type"
#: Plain text.
MIME_TEXT: Final = "text/plain"
#: JSON text.
MIME_JSON: Final = "application/json"
#: The invoker (an identity, kept as such), for the backends' users view.
USER_ID: Final = "user.id"
#: The run id, for the backends' sessions view.
SESSION_ID: Final = "session.id"
#: The tool's name, as OpenInference names it.
TOOL_NAME: Final = "tool.name"
#: The model, as OpenInference names it (Phoenix prices a span by it).
LLM_MODEL_NAME: Final = "llm.model_name"
#: The provider, as OpenInference names it.
LLM_PROVIDER: Final = "llm.provider"
#: Prefix of a model call's prompt messages, flattened as OpenInference does
#: (``llm.input_messages.0.message.role``, ``....message.content``). Content.
LLM_INPUT_MESSAGES: Final = "llm.input_messages"
#: Prefix of its answer, likewise (tool calls under ``message.tool_calls.N.tool_call``).
LLM_OUTPUT_MESSAGES: Final = "llm.output_messages"
#: At most this many messages are flattened (span attributes are limited, 128 by default);
#: the whole conversation is in `GEN_AI_INPUT_MESSAGES` and `INPUT_VALUE` either way.
LLM_MESSAGES_FLATTENED: Final = 24
#: Input tokens, as OpenInference names them.
LLM_TOKEN_COUNT_PROMPT: Final = "llm.token_count.prompt"
#: Output tokens, as OpenInference names them.
LLM_TOKEN_COUNT_COMPLETION: Final = "llm.token_count.completion"
#: Input plus output tokens.
LLM_TOKEN_COUNT_TOTAL: Final = "llm.token_count.total"
#: The resource attribute naming the Phoenix project (set it with the standard
#: ``OTEL_RESOURCE_ATTRIBUTES=openinference.project.name=my-project``).
PROJECT_NAME: Final = "openinference.project.name"

# -- opsgate attributes ------------------------------------------------------------------------

#: The gate's effect: ``allow``, ``deny`` or ``needs_approval``.
DECISION: Final = "opsgate.decision"
#: The decision's stable reason code (``allowed``, ``arg_constraint``, ...).
DECISION_REASON: Final = "opsgate.decision.reason"
#: The policy rule that decided, as a dotted path into the policy document.
DECISION_RULE: Final = "opsgate.decision.rule"
#: The argument a decision is about, when there is one.
DECISION_ARGUMENT: Final = "opsgate.decision.argument"
#: The cap a ``cap_exceeded`` decision or escalation hit (``max_steps``, ...).
DECISION_CAP: Final = "opsgate.decision.cap"
#: The decision's message; it can quote arguments. Content: only with capture on.
DECISION_MESSAGE: Final = "opsgate.decision.message"
#: The version of the policy the run is decided by.
POLICY_VERSION: Final = "opsgate.policy.version"
#: The autonomy stage of the workflow for this agent.
POLICY_STAGE: Final = "opsgate.policy.stage"
#: The router's name of the model of a ``chat`` span (``small``, ``large``).
ROUTER_MODEL: Final = "opsgate.model"
#: The step role a model call played (``route``, ``act``, ...).
MODEL_ROLE: Final = "opsgate.model.role"
#: Spend in USD: the run's total on its span, a model call's on its ``chat`` span.
COST_USD: Final = "opsgate.cost.usd"
#: How the run ended: ``completed``, ``failed``, ``escalated``.
RUN_STATUS: Final = "opsgate.run.status"
#: The reason the run ended with (``done``, ``cap_exceeded``, ...).
RUN_REASON: Final = "opsgate.run.reason"
#: Model turns counted in the run (on the run span at the end, and on ``step`` events).
RUN_STEPS: Final = "opsgate.run.steps"
#: Tool calls proposed in the run.
RUN_TOOL_CALLS: Final = "opsgate.run.tool_calls"
#: Proposed calls that were not valid calls of a known tool.
RUN_REFUSALS: Final = "opsgate.run.refusals"
#: Calls denied by the policy or by a person.
RUN_DENIALS: Final = "opsgate.run.denials"
#: Tool calls that failed.
RUN_ERRORS: Final = "opsgate.run.errors"
#: Tool retries in the run.
RUN_RETRIES: Final = "opsgate.run.retries"
#: Who invoked the run (a person or a service identity).
INVOKER: Final = "opsgate.invoker"
#: Whether the plan was committed (the gateway then denies calls outside it).
PLAN_COMMITTED: Final = "opsgate.plan.committed"
#: The tools a committed plan names.
PLAN_TOOLS: Final = "opsgate.plan.tools"
#: Why a plan was refused (``plan_after_untrusted``, ``invalid_plan``, ...).
PLAN_REFUSED: Final = "opsgate.plan.refused"
#: Trust label of content entering the run: ``trusted`` or ``untrusted``.
PROVENANCE_TRUST: Final = "opsgate.provenance.trust"
#: Where content entering the run came from (``request``, ``tool:lookup#c1``, a document).
PROVENANCE_SOURCE: Final = "opsgate.provenance.source"
#: Who answered an approval request.
APPROVAL_APPROVER: Final = "opsgate.approval.approver"
#: The approval request's id.
APPROVAL_REQUEST_ID: Final = "opsgate.approval.request_id"
#: The approver's free-text reason. Content: only with capture on.
APPROVAL_REASON: Final = "opsgate.approval.reason"
#: Attempts a tool call took (1 without retries); the attempt number on a retry event.
TOOL_ATTEMPTS: Final = "opsgate.tool.attempts"
#: An error's text; it can quote arguments or results. Content: only with capture on.
ERROR_MESSAGE: Final = "opsgate.error.message"
#: Why a run was escalated (``cap_exceeded``, ``approval_expired``, ``requested``).
ESCALATION_REASON: Final = "opsgate.escalation.reason"
#: The escalation's message. Content: only with capture on.
ESCALATION_MESSAGE: Final = "opsgate.escalation.message"
#: The span status description in the ``spans`` table (the table has no column for it);
#: the same key OTel's Zipkin and Jaeger exporters use.
OTEL_STATUS_DESCRIPTION: Final = "otel.status_description"

# -- span events -------------------------------------------------------------------------------
# Span events are named ``opsgate.<event type>``. On the run span: context_read, step,
# write_performed, escalated (and decisions of calls that have no open tool span). On a tool
# span: decision, approval_requested, approval_granted, approval_denied, tool_retry, and
# escalated when the escalation cut the call off.

#: Prefix of every span event name.
EVENT_PREFIX: Final = "opsgate."

#: Value of `ERROR_TYPE` on spans still open when their run ended without closing them.
ERROR_UNFINISHED: Final = "unfinished"
#: Value of `ERROR_TYPE` on spans still open when the recorder was shut down or evicted them.
ERROR_ABANDONED: Final = "abandoned"
