"""Independent NumPy implementations of every exercise: the grader's trusted reference.

One module per chapter, named after the chapter's slug without its number
(`02_principles` -> `autograder.oracle.principles`), so that `checks.runner.oracle_for` finds it.

Rules every oracle follows, so that a check can compare against it without second-guessing:
- NumPy in, NumPy out; results are float32 (booleans for masks), computed in float64 inside;
- clarity over speed: the formula of the contract, written out, with nothing clever to get wrong;
- never imports PyTorch or TensorFlow.
"""
