"""mixstudy: a reproducible study of mixing regularisers. The package is its layers, one sub-package
each, lowest first: core, data, model, runs, train, results, figures, report; cli.py on top
(docs/architecture.md; tests/test_architecture.py checks that imports only go down)."""
