"""Worked examples of extending tfkd (docs/extending.md): each is one file and one registration.

Importing a module registers its model or method; the tests import both, so the model x method
matrix, the export tests and the flag tests run them beside the built-in ones.
"""
