"""Who may do what: the employee, hr and admin roles, and manager access to sources.

Roles come from settings that list identities, comma-separated. An entry may be
a Slack user id (``U0123ABCD``), a Slack user-group handle (``@hr-team``), a
Teams AAD object id (a GUID) or an e-mail address. Matching ignores case.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.message import IncomingMessage

EMPLOYEE = "employee"
HR = "hr"
ADMIN = "admin"
MANAGER = "manager"

AUDIENCE_ALL = "all"
AUDIENCE_MANAGERS = "managers"


def parse_identity_list(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(item.strip().lower() for item in value.split(",") if item.strip())


def identities_of(message: IncomingMessage) -> set[str]:
    """Every identifier under which a role may list the sender."""
    found = {message.user_id.lower()}
    email = message.extra.get("email")
    if isinstance(email, str) and email:
        found.add(email.lower())
    aad = message.extra.get("aad_object_id")
    if isinstance(aad, str) and aad:
        found.add(aad.lower())
    found.update("@" + group.lower().lstrip("@") for group in message.user_groups)
    return found


@dataclass(frozen=True)
class RoleDirectory:
    """Role membership read from settings."""

    hr: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    managers: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings) -> RoleDirectory:
        return cls(
            hr=parse_identity_list(settings.hr_users),
            admins=parse_identity_list(settings.admin_users),
            managers=parse_identity_list(settings.manager_users),
        )

    def roles_of(self, message: IncomingMessage) -> frozenset[str]:
        identities = identities_of(message)
        roles = {EMPLOYEE}
        if identities & self.hr:
            roles.add(HR)
        if identities & self.admins:
            roles.add(ADMIN)
        if identities & self.managers:
            roles.add(MANAGER)
        return frozenset(roles)

    def can_manage_sources(self, message: IncomingMessage) -> bool:
        return bool(self.roles_of(message) & {HR, ADMIN})

    def audiences_for(self, message: IncomingMessage) -> frozenset[str]:
        """Source audiences whose content may appear in a reply to ``message``.

        Where others can read the reply (a public channel), only sources for
        everyone qualify, whoever asked.
        """
        if message.is_public:
            return frozenset({AUDIENCE_ALL})
        audiences = {AUDIENCE_ALL}
        if MANAGER in self.roles_of(message):
            audiences.add(AUDIENCE_MANAGERS)
        audiences.update(group.lower().lstrip("@") for group in message.user_groups)
        return frozenset(audiences)
