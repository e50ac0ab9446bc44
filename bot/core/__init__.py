"""Platform-neutral handling of a message: accept, route, answer, store."""
