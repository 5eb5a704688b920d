"""The CPU-sized mini VLM (a LLaVA: small SigLIP tower + SmolLM2-135M-Instruct) and its generated data.

  glyphs.py      glyph-grid images: one character per vision patch
  tasks.py       generated problems (arithmetic, word problems, geometry) in three views, fixed splits
  build.py       assemble the LLaVA, align its vision side, save (`phaserl demo build-mini-vlm`)
  align.py       the alignment (vision tower and projector only; the LM stays frozen)
  perception.py  nearest-token accuracy of the patch features
  data.py        the problems as a recipe data source
Nothing heavy is imported here.
"""
