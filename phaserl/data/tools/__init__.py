"""Data tools behind `phaserl data ...`: plain functions the CLI calls (each module's header names its flags).

  inspect.inspect_command          counts, missing images, caption coverage, rendered prompts per view
  decontaminate.decontaminate_command   drop items overlapping benchmarks (text n-grams, image pHash)
  filter.filter_command            keep problems whose pass rate under K samples lies in a range
  caption.caption_command          a VLM caption per image for the image+caption view

Every tool writes canonical rows (load them back with the generic adapter).
"""
