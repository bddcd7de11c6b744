"""User-facing errors: one line, exit 2. Raised by the planner, launchers and report; printed by the CLI."""


class UserError(ValueError):
    """Bad input the user can fix; the message is one line that names what is wrong."""
