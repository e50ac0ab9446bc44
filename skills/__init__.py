"""Skills the bot routes messages to. Each one implements :class:`skills.base.Skill`."""
