"""`marquee`, the command line: native gRPC through the gateway, with typer and rich."""
