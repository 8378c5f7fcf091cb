"""The console's pages, one module each with a ``render()`` that draws it (thin: service calls only)."""
