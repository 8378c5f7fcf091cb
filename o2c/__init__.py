"""The `o2c` command: wires settings, store and the other packages together."""
