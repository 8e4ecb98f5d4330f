"""The book's diagrams, drawn with matplotlib and committed as SVG.

`python -m book.diagrams.ch02` rewrites chapter 02's figures; `tests/test_diagrams.py` fails when
a committed SVG differs from what its script draws now.
"""
