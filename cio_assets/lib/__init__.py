"""Small utilities that know nothing of the pipeline: chunking, text, time and days, figures, bulk reads and
writes, named locks, database engines and their errors, a run that must stop."""
