"""The Textual console. Only front ends import this package; the engine never does."""
