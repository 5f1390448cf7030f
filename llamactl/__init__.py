"""llamactl: run a local llama.cpp model as a backend for Claude Code and other API clients."""

__version__ = "0.1.0"
