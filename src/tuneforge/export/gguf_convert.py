"""HF folder -> GGUF with llama.cpp's own converter (`convert_hf_to_gguf.py`): no tensor-name mapping here.

The converter is not on PyPI as a package of its own; the llama-cpp-python source distribution vendors
llama.cpp with it. The first GGUF export fetches that sdist with pip (about 80 MB, once) and keeps only the
converter, its `conversion/` package and the matching `gguf-py` in ~/.cache/tuneforge. Set
TUNEFORGE_LLAMA_CPP to a llama.cpp checkout to use that instead (offline machines, newer architectures).

The converter writes f32, f16, bf16 and q8_0 itself. The k-quants (q4_k_m, q5_k_m, ...) need llama.cpp's
compiled `llama-quantize` on PATH (or TUNEFORGE_LLAMA_QUANTIZE), run on the f16 file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from tuneforge.errors import TuneforgeError

LLAMA_CPP_PYTHON = (
    "0.3.36"  # its sdist vendors the llama.cpp converter this version of tuneforge was tested with
)
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZE_TYPES = (
    "q4_0",
    "q4_1",
    "q5_0",
    "q5_1",
    "q2_k",
    "q3_k_m",
    "q4_k_s",
    "q4_k_m",
    "q5_k_s",
    "q5_k_m",
    "q6_k",
)


def converter_root(notice: Callable[[str], None]) -> Path:
    given = os.environ.get("TUNEFORGE_LLAMA_CPP")
    if given:
        root = Path(given).expanduser()
        if not (root / "convert_hf_to_gguf.py").is_file():
            raise TuneforgeError(
                f"TUNEFORGE_LLAMA_CPP={given} has no convert_hf_to_gguf.py: is it a llama.cpp checkout?"
            )
        return root
    root = Path.home() / ".cache" / "tuneforge" / f"llama.cpp-{LLAMA_CPP_PYTHON}"
    if not (root / "convert_hf_to_gguf.py").is_file():
        notice(
            f"fetching llama.cpp's GGUF converter (llama-cpp-python {LLAMA_CPP_PYTHON} source, once) into {root}"
        )
        fetch_converter(root)
    return root


def fetch_converter(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tuneforge-llama-cpp-") as scratch:
        download = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}"]
        done = subprocess.run(
            [*download, "--no-deps", "--no-binary", ":all:", "-d", scratch], capture_output=True, text=True
        )
        sdists = list(Path(scratch).glob("*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise TuneforgeError(
                "GGUF export needs llama.cpp's converter and could not download it with pip "
                f"({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no sdist'}). "
                "Set TUNEFORGE_LLAMA_CPP to a llama.cpp checkout (git clone https://github.com/ggml-org/llama.cpp)."
            )
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(sdists[0]) as archive:
            for member in archive.getmembers():
                _, _, inside = member.name.partition("/vendor/llama.cpp/")
                if member.isfile() and inside.startswith(CONVERTER_FILES):
                    member.name = inside
                    archive.extract(member, partial, filter="data")
        partial.rename(root)


def convert(
    hf_dir: Path,
    out_file: Path,
    gguf_type: str,
    notice: Callable[[str], None] = print,
    name: str | None = None,
) -> None:
    """Write `out_file` from the merged model in `hf_dir`, in `gguf_type` (see CONVERTER_TYPES, QUANTIZE_TYPES),
    named `name` in its metadata (general.name; else the converter guesses one from the folder's name)."""
    if gguf_type in QUANTIZE_TYPES:
        quantize = find_quantize()
        full = out_file.with_name(out_file.stem + "-f16.gguf")
        convert(hf_dir, full, "f16", notice, name)
        run([quantize, str(full), str(out_file), gguf_type.upper()], "llama-quantize")
        full.unlink()
        return
    root = converter_root(notice)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "gguf-py"), str(root)])}
    script = str(root / "convert_hf_to_gguf.py")
    run(
        [sys.executable, script, str(hf_dir), "--outfile", str(out_file), "--outtype", gguf_type]
        + (["--model-name", name] if name else []),
        "the converter",
        env,
    )


def find_quantize() -> str:
    found = os.environ.get("TUNEFORGE_LLAMA_QUANTIZE") or shutil.which("llama-quantize")
    if not found:
        raise TuneforgeError(
            "k-quant and 4/5-bit GGUF types need llama.cpp's llama-quantize: build llama.cpp and put it on PATH "
            f"(or set TUNEFORGE_LLAMA_QUANTIZE), or export with --quant one of {', '.join(CONVERTER_TYPES)}."
        )
    return found


def run(command: list[str], what: str, env: dict | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise TuneforgeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
