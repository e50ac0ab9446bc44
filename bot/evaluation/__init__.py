"""Offline evaluation of the bot's skills against question files with known answers."""
