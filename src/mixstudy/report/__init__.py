"""The report, one module per group of sections, assembled and written by `document`
(`mixstudy report`)."""
