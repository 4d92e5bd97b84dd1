"""The command-line interface: thin Typer apps over the Python API."""
