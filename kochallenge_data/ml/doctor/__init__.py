"""``doctor``: file-level checks that a model directory will load and behave under vLLM.

Reads JSON configs, tokenizer files and safetensors headers only: no torch, no weights, so a 7B
directory is checked in well under a second. Every problem is a :class:`Finding` with a stable code
from :data:`CODES`, a severity, the file, what breaks and how to fix it. ``load=True`` adds the
checks that need the ``train`` extra (tokenizer loaded as vLLM loads it, a probe round trip and one
CPU forward pass); they live in :func:`load_checks` and import transformers lazily. ``weights=False``
(``doctor --no-weights``) checks a folder of config and tokenizer files only: the router host, which
renders prompts for a vLLM server that holds the weights.

Exit codes (:attr:`DoctorReport.exit_code`): 0 sound, 1 problems (errors; warnings too with
``strict``), 2 not a model directory or unreadable.

Where things live: ``report`` (codes, findings, the report and its text), ``model_dir`` (reading files
safely), ``values`` (small value helpers), ``sentencepiece`` (the tokenizer.model reader), ``inspection``
(one directory parsed), ``config_checks`` and ``tokenizer_checks`` (the checks), ``base_compare``
(``--base``), ``load`` (``--load``) and ``run`` (:func:`inspect_dir` and :func:`doctor`). Import from
this package; the names below are its interface.
"""

from __future__ import annotations

from .base_compare import (
    CONFIG_ALLOWED,
    GEN_ALLOWED,
    TOKCFG_ALLOWED,
    TOKCFG_BREAKING,
    compare_with_base,
    normalize_config,
)
from .config_checks import (
    SAMPLING_FIELDS,
    check_context,
    check_dtype,
    check_generation,
    check_layout,
    check_shapes,
    check_structure,
    check_trainer_leftovers,
    check_weights,
    derived_max_len,
)
from .inspection import Inspection, Tokenizer, Weights
from .load import PROBE, load_checks
from .model_dir import (
    MAX_ENTRIES,
    MAX_JSON_BYTES,
    MAX_TOKENIZER_MODEL_BYTES,
    METADATA_FILES,
    TOKENIZER_FILES,
    WEIGHT_SUFFIXES,
    ModelDir,
    ModelDirError,
)
from .report import CODES, FATAL_CODES, DoctorReport, Finding, Severity, format_report
from .run import collect_facts, doctor, inspect_dir
from .sentencepiece import SpModel, parse_sentencepiece
from .tokenizer_checks import (
    BYTE_PIECES,
    check_char_coverage,
    check_eos,
    check_newlines,
    check_special_map,
    check_token_ids,
    check_tokenizer_agreement,
    check_tokenizer_files,
    eos_ids,
)
from .values import as_int, config_dtype, id_list, short, show_chars, text_config, token_text

__all__ = [
    "BYTE_PIECES",
    "CODES",
    "CONFIG_ALLOWED",
    "FATAL_CODES",
    "GEN_ALLOWED",
    "MAX_ENTRIES",
    "MAX_JSON_BYTES",
    "MAX_TOKENIZER_MODEL_BYTES",
    "METADATA_FILES",
    "PROBE",
    "SAMPLING_FIELDS",
    "TOKCFG_ALLOWED",
    "TOKCFG_BREAKING",
    "TOKENIZER_FILES",
    "WEIGHT_SUFFIXES",
    "DoctorReport",
    "Finding",
    "Inspection",
    "ModelDir",
    "ModelDirError",
    "Severity",
    "SpModel",
    "Tokenizer",
    "Weights",
    "as_int",
    "check_char_coverage",
    "check_context",
    "check_dtype",
    "check_eos",
    "check_generation",
    "check_layout",
    "check_newlines",
    "check_shapes",
    "check_special_map",
    "check_structure",
    "check_token_ids",
    "check_tokenizer_agreement",
    "check_tokenizer_files",
    "check_trainer_leftovers",
    "check_weights",
    "collect_facts",
    "compare_with_base",
    "config_dtype",
    "derived_max_len",
    "doctor",
    "eos_ids",
    "format_report",
    "id_list",
    "inspect_dir",
    "load_checks",
    "normalize_config",
    "parse_sentencepiece",
    "short",
    "show_chars",
    "text_config",
    "token_text",
]
