"""Development-only builders, kept apart from the product (`tuneforge` never imports this package).

`tiny_model` writes a tiny random model with a freshly trained tokenizer and `demo_data` writes the
quickstart's request -> shell-command dataset: what `make demo` and the tests use offline.

    python -m tuneforge_dev.tiny_model models/tiny-llama --arch llama
    python -m tuneforge_dev.demo_data data/demo
"""
