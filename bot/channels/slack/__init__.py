"""Slack: the Events API over HTTP through slack-bolt, and replies through the Web API."""
