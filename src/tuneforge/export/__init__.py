"""Export stage: a finished run as files other tools load, each checked against the model that was evaluated.

    tuneforge export runs/quickstart --out exports/quickstart                  # merged safetensors (hf)
    tuneforge export runs/quickstart --out exports/q-gguf --format gguf --quant q8_0
    tuneforge export runs/quickstart --out exports/q-ollama --format ollama     # GGUF + Modelfile

command.py (what `tuneforge export` runs: hub login checked first, export, verdict, upload), exporter.py
(the flow, staged and renamed into place whole; names no format), options.py (ExportOptions),
formats/ (one module per format implementing formats/base.py's ExportFormat, and the FORMATS registry in
formats/__init__.py), merge.py (adapter folded into its base), gguf_convert.py (llama.cpp's converter),
ollama.py (Modelfile), check.py + reader.py (the exported files read back in a fresh process,
export_check.json), card.py (README.md model card), hub.py (upload).
"""
