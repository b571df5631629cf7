"""The figures, one module per family, and their registry (`mixstudy figures`)."""
