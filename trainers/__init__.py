"""Thin command-line entry points over the tfkd library."""
