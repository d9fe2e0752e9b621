"""`--format ollama`: the GGUF file of `--format gguf` and a Modelfile beside it (`ollama create NAME -f
Modelfile` in the folder), whose TEMPLATE is the run's chat template; see tuneforge.export.ollama.

    tuneforge export runs/quickstart --out exports/q-ollama --format ollama
"""

from __future__ import annotations

from tuneforge.export.formats.gguf import GgufFormat


class OllamaFormat(GgufFormat):
    name = "ollama"
    help = "GGUF + Modelfile"

    def write(self, model, loaded, staging, options, notice) -> None:
        # Imported here: it pulls in transformers, which `tuneforge --help` (reading the registry) should not.
        from tuneforge.export.ollama import TOOLS_NOTICE, modelfile, renders_tools

        super().write(model, loaded, staging, options, notice)
        if renders_tools(loaded.encoder):
            notice(TOOLS_NOTICE)
        text = modelfile(loaded.encoder, self.model_file(options), loaded.config.data.system_prompt)
        (staging / "Modelfile").write_text(text)
