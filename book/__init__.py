"""Reusable pieces of the book: the framework-tabs Sphinx extension and kernel plumbing."""
