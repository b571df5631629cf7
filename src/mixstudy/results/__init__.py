"""The run folders read into one table, statistics, the tuning's selection, the tables, the
published cells and `mixstudy aggregate` (torch-free)."""
