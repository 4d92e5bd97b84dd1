"""The command-line interface: thin Typer apps over the Python API."""

#: Nothing to import: the commands are the console scripts `opsgate` (`opsgate.cli.main`) and
#: `agent-eval` (`opsgate.cli.eval_main`).
__all__: list[str] = []
