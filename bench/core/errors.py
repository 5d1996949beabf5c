"""Errors caused by the user's input. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input: an unknown name, an impossible number, a missing folder. Never retried."""
