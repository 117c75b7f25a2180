"""C++ extensions compiled on first use (``build``), with their sources."""
