"""The command-line tools: one module per command, shared options and error handling in
``_common``. Only this package speaks of command-line flags."""
