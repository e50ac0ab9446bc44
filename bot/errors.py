"""Exceptions of the bot.

    ChatOpsError
    ├── ConfigError           a setting is missing or invalid; the message names the variable
    ├── DatabaseError         the database is unreachable or lacks something we need (pgvector)
    ├── SourceError           a knowledge source cannot be read or stored; names the file
    └── SkillError            an expected failure inside a skill that becomes a polite reply

Model backends raise :class:`bot.llm.ModelError`. Channel adapters map these to replies
or HTTP statuses; anything else is logged with its traceback and the user gets an
incident id.
"""


class ChatOpsError(Exception):
    """Base class of the bot's own errors."""


class ConfigError(ChatOpsError):
    """A setting is missing or invalid."""


class DatabaseError(ChatOpsError):
    """The database cannot be used as configured."""


class SourceError(ChatOpsError):
    """A knowledge source cannot be read or stored."""


class SkillError(ChatOpsError):
    """An expected failure inside a skill; its message is safe to show to the user."""
