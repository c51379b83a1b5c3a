"""Writes of the dataset core, one module per area: `datasets` (create, share, delete),
`imports` (files, zips, server folders, labels) and `alignment` (jobs, chunks, faces)."""
