from dockwarden.cli import app

app(prog_name="dockwarden")
