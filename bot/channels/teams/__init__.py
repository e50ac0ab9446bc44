"""Microsoft Teams: Bot Framework activities in through botbuilder's CloudAdapter, replies out proactively."""
