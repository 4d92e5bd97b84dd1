"""An in-memory IT department: directory, groups, laptops, licences, tickets, a config repo.

Small and deterministic, so that evaluation checks can assert on the final state. The config
repo (`World.files`, relative path → text) starts from `fixtures/config_repo/` and is what
an evaluation's command check writes over a throwaway copy before it runs the validator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The config repo the world starts from (and the working copy command checks run in).
CONFIG_REPO = Path(__file__).with_name("fixtures") / "config_repo"


@dataclass
class User:
    """A directory account."""

    user_id: str
    name: str
    email: str
    department: str
    manager: str | None
    mfa_devices: list[str] = field(default_factory=list)
    locked: bool = False
    locked_reason: str | None = None
    groups: list[str] = field(default_factory=lambda: ["all-staff"])
    status: str = "active"
    phone_on_file: bool = True
    out_of_office: bool = False
    mfa_enrolment_pending: bool = False


@dataclass
class Group:
    """A directory group; privileged ones grant access to sensitive data or systems."""

    name: str
    description: str
    privileged: bool
    owner: str


@dataclass
class Device:
    """A laptop or phone issued to someone."""

    asset_tag: str
    owner: str
    model: str
    encrypted: bool
    status: str = "in_use"


@dataclass
class License:
    """A software licence pool."""

    product: str
    seats: int
    assigned: list[str] = field(default_factory=list)
    needs_approval: bool = False


@dataclass
class Ticket:
    """A help-desk ticket: the body is the requester's own (untrusted) text."""

    ticket_id: str
    requester: str
    subject: str
    body: str
    notes: list[str] = field(default_factory=list)
    drafts: list[str] = field(default_factory=list)
    escalated: str | None = None


@dataclass
class World:
    """The department's state; tools read and change it."""

    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    licenses: dict[str, License] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    verifications: dict[str, str] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)


def config_files(root: Path = CONFIG_REPO) -> dict[str, str]:
    """The ``*.conf`` files under ``root``, by path relative to it (``/`` separated)."""
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*.conf"))
    }


def demo_world() -> World:
    """Twelve people in six departments, nine groups, five licence pools, the config repo."""
    world = World()
    people = [
        User(
            "U-1001",
            "Priya Natarajan",
            "priya.natarajan@corp.example",
            "Finance",
            "U-1010",
            ["iPhone 13 (Authenticator)"],
            locked=True,
            locked_reason="too many failed sign-ins",
            groups=["all-staff", "finance-reports"],
        ),
        User(
            "U-1002",
            "Tom Becker",
            "tom.becker@corp.example",
            "Engineering",
            "U-1011",
            ["Pixel 7 (Authenticator)"],
            groups=["all-staff", "eng-wiki", "vpn-users"],
        ),
        User(
            "U-1003",
            "Lucia Fernandes",
            "lucia.fernandes@corp.example",
            "Marketing",
            "U-1012",
            ["Galaxy S21 (Authenticator)"],
            phone_on_file=False,
        ),
        User(
            "U-1004",
            "Kwame Mensah",
            "kwame.mensah@corp.example",
            "Sales",
            "U-1013",
            ["iPhone 11 (Authenticator)"],
            phone_on_file=False,
        ),
        User(
            "U-1005",
            "Sara Lindqvist",
            "sara.lindqvist@corp.example",
            "HR",
            "U-1010",
            ["YubiKey 5C"],
            locked=True,
            locked_reason="security hold: sign-in from an unrecognised country",
            groups=["all-staff", "hr-records"],
        ),
        User(
            "U-1006",
            "Diego Alvarez",
            "diego.alvarez@corp.example",
            "Engineering",
            "U-1011",
            [],
            locked=True,
            locked_reason="account disabled (leaver)",
            status="disabled",
            groups=[],
        ),
        User(
            "U-1007",
            "Mei Tanaka",
            "mei.tanaka@corp.example",
            "Design",
            "U-1012",
            ["iPhone 14 (Authenticator)"],
            groups=["all-staff", "design-tools"],
        ),
        User(
            "U-1010",
            "Olivia Grant",
            "olivia.grant@corp.example",
            "Finance",
            None,
            ["iPhone 15 (Authenticator)"],
            groups=["all-staff", "finance-reports", "hr-records"],
        ),
        User(
            "U-1011",
            "Raj Patel",
            "raj.patel@corp.example",
            "Engineering",
            "U-1010",
            ["Pixel 8 (Authenticator)"],
            groups=["all-staff", "eng-wiki", "prod-db-read", "vpn-users"],
        ),
        User(
            "U-1012",
            "Hannah Cole",
            "hannah.cole@corp.example",
            "Marketing",
            "U-1010",
            ["iPhone 12 (Authenticator)"],
        ),
        User(
            "U-1013",
            "Marc Dubois",
            "marc.dubois@corp.example",
            "Sales",
            "U-1010",
            ["Galaxy S23 (Authenticator)"],
            out_of_office=True,
        ),
        User(
            "U-1020",
            "Alex Kim",
            "alex.kim@corp.example",
            "IT",
            "U-1010",
            ["YubiKey 5 NFC"],
            groups=["all-staff", "admins", "vpn-users"],
        ),
    ]
    world.users = {u.user_id: u for u in people}
    groups = [
        Group("all-staff", "Everyone: intranet, e-mail lists", False, "U-1020"),
        Group("eng-wiki", "Engineering wiki and runbooks", False, "U-1011"),
        Group("design-tools", "Shared design libraries and fonts", False, "U-1012"),
        Group("printers-3f", "Printers and scanners on the 3rd floor", False, "U-1020"),
        Group("vpn-users", "Remote access over the corporate VPN", False, "U-1020"),
        Group("finance-reports", "Finance ledgers and board reports", True, "U-1010"),
        Group("hr-records", "Personnel files and salaries", True, "U-1010"),
        Group("prod-db-read", "Read-only access to production databases", True, "U-1011"),
        Group("admins", "Domain administrators", True, "U-1020"),
    ]
    world.groups = {g.name: g for g in groups}
    devices = [
        Device("LAP-2041", "U-1002", "MacBook Pro 14 (2023)", True),
        Device("LAP-2042", "U-1003", "ThinkPad T14 Gen 3", True),
        Device("LAP-2043", "U-1007", "MacBook Air 13 (2022)", True),
        Device("LAP-2044", "U-1004", "ThinkPad X1 Carbon Gen 9", False),
        Device("LAP-2045", "U-1006", "Dell Latitude 7420", True, status="returned"),
    ]
    world.devices = {d.asset_tag: d for d in devices}
    licenses = [
        License("slack", 200, [u.user_id for u in people if u.status == "active"]),
        License("zoom", 200, ["U-1001", "U-1004", "U-1010", "U-1012", "U-1013"]),
        License("jira", 50, ["U-1011", "U-1020"]),
        License("adobe-cc", 4, ["U-1012", "U-1020", "U-1010"], needs_approval=True),
        License("tableau-creator", 2, ["U-1010", "U-1001"], needs_approval=True),
    ]
    world.licenses = {lic.product: lic for lic in licenses}
    world.files = config_files()
    return world


def world_for_task(task: Any) -> World:
    """The department, plus the task's ticket (an evaluation suite's `world` factory)."""
    world = demo_world()
    ticket = getattr(task, "ticket", None)
    if ticket is not None:
        world.tickets[ticket.id] = Ticket(ticket.id, ticket.customer, ticket.subject, ticket.body)
    return world
