"""Slack: Events API over HTTP or Socket Mode through slack-bolt, answers and feedback through the Web API.

Where a request goes, in order: ``endpoint`` (HTTP) or ``socket_mode`` hands it to the Bolt
app in ``app``; ``events``, ``commands`` and ``interactivity`` hold the listeners, which
convert payloads with ``convert`` and queue them; a worker answers through ``client``,
which formats with ``format`` and ``blocks`` and records posted parts with ``delivery``.
"""
