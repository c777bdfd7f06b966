"""The hostile corpus: products built to make the gate leak, crash or hang, and an independent leak checker."""
