"""Old home of the scheduling code, kept only because migration 0002 imports it by path."""
