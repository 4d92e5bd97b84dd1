"""The errors opsgate raises, as one small tree.

::

    OpsgateError                    base of everything opsgate raises on purpose
    ├── UserError                   misconfiguration a user fixes (CLI: one line, exit 2)
    │   ├── ContractError           a tool contract that cannot be built
    │   ├── PolicyError             a policy document that does not load or bind
    │   ├── ConfigError             any other configuration (secrets, paths)
    │   ├── ApprovalError           an approval that cannot be given (unknown, decided, expired)
    │   └── SuiteError              an evaluation suite that does not load
    ├── ModelError                  a model call failed (counted in the run, never lost)
    │   ├── ModelTimeout            no answer within the timeout
    │   ├── ModelRateLimited        429 after the retries allowed
    │   ├── ModelServerError        5xx (or a broken connection) after the retries allowed
    │   ├── ModelRequestError       4xx other than 429: the request itself is wrong
    │   └── ModelOutputError        an answer that is not a valid tool call / JSON after repairs
    ├── BudgetExceeded              the next model call would cross the run's budget
    ├── ToolError                   a tool failed while running (counted, never lost)
    │   ├── ToolTransientError      raised by a tool: "safe to try again"
    │   └── ToolTimeout             the gateway stopped waiting for a tool
    ├── InvalidToolCall             a proposed call that is not a valid call of a known tool
    ├── StoreError                  the database cannot be opened, is not ours, or refused a write
    ├── AuditIntegrityError         the audit trail does not verify (names the first bad event)
    └── RunNotActive                a call on a run that already ended or escalated

Signals the runtime acts on (deny, approval required, escalation) are not exceptions:
they are values (`Decision`, `Escalation`) returned by the gate, so that nothing on the
hot path unwinds the stack and no event is lost to an uncaught raise.
"""

from __future__ import annotations

__all__ = [
    "ApprovalError",
    "AuditIntegrityError",
    "BudgetExceeded",
    "ConfigError",
    "ContractError",
    "InvalidToolCall",
    "ModelError",
    "ModelOutputError",
    "ModelRateLimited",
    "ModelRequestError",
    "ModelServerError",
    "ModelTimeout",
    "OpsgateError",
    "PolicyError",
    "RunNotActive",
    "StoreError",
    "SuiteError",
    "ToolError",
    "ToolTimeout",
    "ToolTransientError",
    "UserError",
]


class OpsgateError(Exception):
    """Base class of every error opsgate raises on purpose."""


class UserError(OpsgateError):
    """Misconfiguration: the message says what to change."""


class ContractError(UserError):
    """A tool contract cannot be built from the function given."""


class PolicyError(UserError):
    """A policy document is malformed, invalid, or names what does not exist.

    Attributes:
        source: The file (or ``<string>``) the policy came from.
        location: Where in the document, as a dotted key path, when known.
    """

    def __init__(self, message: str, *, source: str = "<string>", location: str = "") -> None:
        self.source = source
        self.location = location
        where = f"{source}" + (f" at `{location}`" if location else "")
        super().__init__(f"{where}: {message}")


class ConfigError(UserError):
    """Configuration outside a policy (secret store, paths, options) is wrong."""


class ApprovalError(UserError):
    """An approval request that is unknown, already decided, expired, or already executed."""


class SuiteError(UserError):
    """An evaluation suite is malformed."""


class ModelError(OpsgateError):
    """A model call failed.

    Attributes:
        model: The model that was called.
        attempts: How many HTTP attempts were made (each one counted in the run).
    """

    def __init__(self, message: str, *, model: str = "", attempts: int = 0) -> None:
        self.model = model
        self.attempts = attempts
        super().__init__(message)


class ModelTimeout(ModelError):
    """The model did not answer within its timeout."""


class ModelRateLimited(ModelError):
    """The provider kept answering 429 Too Many Requests."""


class ModelServerError(ModelError):
    """The provider kept failing (5xx, broken connection)."""


class ModelRequestError(ModelError):
    """The provider refused the request (4xx other than 429): fix the request or config."""


class ModelOutputError(ModelError):
    """The model's answer is not a valid tool call or JSON, even after repair turns.

    Attributes:
        raw: The raw output (redacted before it is stored anywhere).
    """

    def __init__(self, message: str, *, raw: str = "", model: str = "", attempts: int = 0):
        self.raw = raw
        super().__init__(message, model=model, attempts=attempts)


class BudgetExceeded(OpsgateError):
    """The next model call would cross the run's budget: the run stops before it.

    Attributes:
        budget_usd: The limit.
        spent_usd: What the run had spent.
        next_usd: The estimated cost of the call that was not made.
    """

    def __init__(self, message: str, *, budget_usd: float, spent_usd: float, next_usd: float):
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.next_usd = next_usd
        super().__init__(message)


class ToolError(OpsgateError):
    """A tool failed while running."""


class ToolTransientError(ToolError):
    """Raise from a tool to say the failure is transient and the call may be retried.

    Raise it only before the tool changed anything: the gateway retries write tools
    only on this error, never on a timeout.
    """


class ToolTimeout(ToolError):
    """The gateway stopped waiting for a tool after its timeout."""


class InvalidToolCall(OpsgateError):
    """A proposed call names no known tool, or its arguments are not valid for the tool.

    The gateway turns it into a recorded, counted refusal; ``str(error)`` is precise
    enough to hand back to the model so it can repair the call.

    Attributes:
        code: ``unknown_tool`` or ``invalid_arguments``.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class StoreError(OpsgateError):
    """The database cannot be opened, is not an opsgate database, or refused a write."""


class AuditIntegrityError(OpsgateError):
    """The audit trail failed verification.

    Attributes:
        seq: The first sequence number found bad (or missing), when one can be named.
    """

    def __init__(self, message: str, seq: int | None = None) -> None:
        self.seq = seq
        super().__init__(message)


class RunNotActive(OpsgateError):
    """The run has ended (completed, escalated or failed) and takes no more calls."""
