"""The command line: one `stts` console script (`main`), one module per verb, one shared vocabulary of
flags (`common`), one "backend from arguments" (`common.backend_from_args`)."""
