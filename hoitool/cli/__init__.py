"""The `hoitool` command line: Typer commands that parse, call one library function, report."""
