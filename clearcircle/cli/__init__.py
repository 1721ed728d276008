"""The command-line face: Typer commands over the same core the API uses."""
