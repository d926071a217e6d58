"""The read side: everything the faces show and hand out, derived from the store and the
engine's catalogue, torch-free and free of Rich and Textual (both faces use it):

- `present`: number formats, changed parameters, best values, progress lines;
- `compare`: paired comparisons of two runs and their verdicts;
- `pooling`: what a group of runs is (a configuration, or one value of any key) and one rule
  for pooling runs (leaderboard in both faces, sweep plots);
- `sweep_series`: a sweep's runs as plot series;
- `export`: per-sample and per-run rows as CSV, JSONL or Parquet;
- `report`: the HTML and Markdown write-up.

The write side (queueing, executing, importing) is `inpaint_tui.jobs`.
"""
