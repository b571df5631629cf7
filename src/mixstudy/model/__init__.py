"""The networks, packing K runs into one network, mixing (where alpha acts), the metrics and the
theory's measures: torch, and nothing of runs or folders."""
