"""The application's entry points: the CLI, the Discord daemon, and the one place that wires services."""
