"""The untrusted side: code that runs inside the sandbox next to a student's notebook.

Only this package (and a stub `autograder/__init__.py`) is visible in the sandbox. It must not
import anything else from `autograder`, and nothing here decides a grade: it runs cells and calls,
and sends back plain data (JSON and `.npz` without pickles).
"""
