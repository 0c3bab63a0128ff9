"""The lowest layer, importable from anywhere: settings, errors, logs, metrics, the Paper model, prompts."""
