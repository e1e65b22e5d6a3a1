"""Golden files: golden/<case>/ holds an input and the expected output of every backend."""
