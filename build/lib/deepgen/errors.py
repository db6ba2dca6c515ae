"""User-facing errors: one clear sentence naming the input and the fix."""


class DeepgenError(Exception):
    """An error the user caused (bad path, config or media); the CLI prints it as one line."""
