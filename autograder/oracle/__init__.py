"""Independent NumPy implementations of every exercise: the grader's trusted reference.

One module per chapter, `ch<slug>` (`02_principles` -> `autograder.oracle.ch02_principles`), the
name its record gives (`Chapter.oracle_module`). Never the bare name: `math.py` or `code.py` here
would shadow the standard library (tests/test_oracle.py checks every module's name).

Rules every oracle follows, so that a check can compare against it without second-guessing:
- NumPy in, NumPy out; results are float32 (booleans for masks), computed in float64 inside;
- clarity over speed: the formula of the contract, written out, with nothing clever to get wrong;
- never imports PyTorch or TensorFlow.
"""
