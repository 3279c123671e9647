"""Prompt banks: per imaging modality, the text prompts to ground and their masking ratios.

A bank is a JSON or YAML file:

    {
      "version": 1,
      "presets": {"default": {"high": 0.8, "low": 0.4}, "mild": {"high": 0.6, "low": 0.2}},
      "default_preset": "default",
      "modalities": {
        "brain_mri": {
          "description": "axial brain MRI slices",
          "prompts": [{"text": "a brain tumor", "ratio": "high"},
                      {"text": "brain tissue", "ratio": 0.5}],
          "background": "low",
          "threshold": 0.3, "num_components": 2, "expand_ratio": 1.0
        }
      }
    }

A ratio is the share of a region's patches that gets masked: a number in [0, 1], or the name
of a role ("high", "low", ...) that the chosen preset turns into a number, so one file serves
every preset of the MWM paper. `background` is required. `threshold`, `num_components` and
`expand_ratio` set the region pipeline for that modality (defaults: 0.3, 2, 1.0).

Regions: prompts are ranked by ratio; the prompt with the highest ratio wins where ROIs
overlap. `bank_region_map` turns per-prompt heatmaps into one level map, and
`masker_kwargs_from_prompt_bank` gives the `mwm.TextGuidedMasker` arguments that read it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from .regions import (
    DEFAULT_NUM_COMPONENTS,
    DEFAULT_THRESHOLD,
    mwm_region_map,
    region_level_map,
)

__all__ = [
    "PromptBankError",
    "PromptSpec",
    "ModalitySpec",
    "Prompt",
    "ModalityPrompts",
    "PromptBank",
    "load_prompt_bank",
    "prompt_bank_from_dict",
    "masker_kwargs_from_prompt_bank",
    "bank_region_map",
]

Ratio = Union[float, str]


class PromptBankError(ValueError):
    """A prompt bank file or a lookup in it is invalid; the message names the entry."""


@dataclass(frozen=True)
class PromptSpec:
    """One prompt as written in the file: its ratio may still be a preset role name."""

    text: str
    ratio: Ratio


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    prompts: Tuple[PromptSpec, ...]
    background: Ratio
    threshold: float = DEFAULT_THRESHOLD
    num_components: Optional[int] = DEFAULT_NUM_COMPONENTS
    expand_ratio: float = 1.0
    description: str = ""


@dataclass(frozen=True)
class Prompt:
    text: str
    ratio: float


@dataclass(frozen=True)
class ModalityPrompts:
    """A modality with every ratio resolved to a number (see PromptBank.modality)."""

    name: str
    prompts: Tuple[Prompt, ...]
    background_ratio: float
    threshold: float = DEFAULT_THRESHOLD
    num_components: Optional[int] = DEFAULT_NUM_COMPONENTS
    expand_ratio: float = 1.0
    description: str = ""
    preset: Optional[str] = None

    @property
    def texts(self) -> Tuple[str, ...]:
        return tuple(p.text for p in self.prompts)

    @property
    def level_ratios(self) -> Tuple[float, ...]:
        """The distinct prompt ratios, ascending: level l (1-based) masks at level_ratios[l-1]."""
        return tuple(sorted({p.ratio for p in self.prompts}))

    @property
    def prompt_levels(self) -> Tuple[int, ...]:
        """The level of each prompt, in prompt order."""
        ratios = self.level_ratios
        return tuple(ratios.index(p.ratio) + 1 for p in self.prompts)


@dataclass(frozen=True)
class PromptBank:
    modalities: Mapping[str, ModalitySpec]
    presets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default_preset: Optional[str] = None
    source: str = "<dict>"

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(self.modalities)

    def modality(self, name: str, preset: Optional[str] = None) -> ModalityPrompts:
        """The prompts of `name` with role ratios resolved through `preset` (or the default)."""
        if name not in self.modalities:
            raise PromptBankError(
                f"modality = {name!r} is not in prompt bank {self.source}; "
                f"known modalities: {', '.join(sorted(self.modalities)) or '(none)'}"
            )
        chosen = preset if preset is not None else self.default_preset
        if preset is not None and preset not in self.presets:
            raise PromptBankError(
                f"preset = {preset!r} is not in prompt bank {self.source}; "
                f"known presets: {', '.join(sorted(self.presets)) or '(none)'}"
            )
        spec = self.modalities[name]
        roles = self.presets.get(chosen, {}) if chosen is not None else {}

        def resolve(value: Ratio, where: str) -> float:
            if isinstance(value, str):
                if value not in roles:
                    raise PromptBankError(
                        f"prompt bank {self.source}: {where} = {value!r} names no ratio of preset "
                        f"{chosen!r} (roles: {', '.join(sorted(roles)) or '(none)'})"
                    )
                return float(roles[value])
            return float(value)

        prompts = tuple(
            Prompt(p.text, resolve(p.ratio, f"modalities.{name}.prompts[{i}].ratio"))
            for i, p in enumerate(spec.prompts)
        )
        return ModalityPrompts(
            name=name,
            prompts=prompts,
            background_ratio=resolve(spec.background, f"modalities.{name}.background"),
            threshold=spec.threshold,
            num_components=spec.num_components,
            expand_ratio=spec.expand_ratio,
            description=spec.description,
            preset=chosen,
        )


# --------------------------------------------------------------------------------------------
# loading and validation


def load_prompt_bank(path: Union[str, os.PathLike]) -> PromptBank:
    """Reads and validates a prompt bank from a .json, .yaml or .yml file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompt bank file {str(file)!r} does not exist")
    text = file.read_text(encoding="utf-8")
    suffix = file.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise PromptBankError(
                f"prompt bank file {str(file)!r}: extension {suffix!r} is not .json, .yaml or .yml"
            )
    except (json.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, PromptBankError):
            raise
        raise PromptBankError(
            f"prompt bank file {str(file)!r} is not valid {suffix[1:]}: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError does not derive from ValueError
        raise PromptBankError(f"prompt bank file {str(file)!r} is not valid YAML: {exc}") from exc
    return prompt_bank_from_dict(data, source=str(file))


_TOP_KEYS = {"version", "format", "presets", "default_preset", "modalities", "description"}
_MODALITY_KEYS = {
    "description", "prompts", "background", "threshold", "num_components", "expand_ratio",
}
_PROMPT_KEYS = {"text", "ratio"}


def prompt_bank_from_dict(data: Any, source: str = "<dict>") -> PromptBank:
    """Validates a parsed prompt bank (the JSON/YAML structure) into a PromptBank."""

    def fail(message: str) -> PromptBankError:
        return PromptBankError(f"prompt bank {source}: {message}")

    def require_mapping(value, where: str) -> Mapping:
        if not isinstance(value, Mapping):
            raise fail(f"{where} must be a mapping, got {type(value).__name__}")
        return value

    def reject_unknown(mapping: Mapping, allowed: set, where: str) -> None:
        unknown = sorted(set(map(str, mapping)) - allowed)
        if unknown:
            raise fail(f"{where} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")

    def number(value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"{where} = {value!r} must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise fail(f"{where} = {value!r} must be finite")
        return float(value)

    def ratio_value(value, where: str) -> Ratio:
        if isinstance(value, str):
            if not value:
                raise fail(f"{where} must not be an empty string")
            return value
        ratio = number(value, where)
        if not 0.0 <= ratio <= 1.0:
            raise fail(f"{where} = {value!r} is out of range: a masking ratio must lie in [0, 1]")
        return ratio

    top = require_mapping(data, "the top level")
    reject_unknown(top, _TOP_KEYS, "the top level")
    version = top.get("version", 1)
    if version != 1:
        raise fail(f"version = {version!r} is not supported (expected 1)")

    presets: Dict[str, Dict[str, float]] = {}
    for preset_name, roles in require_mapping(top.get("presets", {}), "presets").items():
        where = f"presets.{preset_name}"
        if not isinstance(preset_name, str):
            raise fail(f"preset names must be strings, got {preset_name!r}")
        roles = require_mapping(roles, where)
        if not roles:
            raise fail(f"{where} must define at least one role, e.g. {{'high': 0.8, 'low': 0.4}}")
        resolved = {}
        for role, value in roles.items():
            ratio = ratio_value(value, f"{where}.{role}")
            if isinstance(ratio, str):
                raise fail(f"{where}.{role} = {value!r} must be a number")
            resolved[str(role)] = ratio
        presets[preset_name] = resolved

    default_preset = top.get("default_preset")
    if default_preset is None and presets:
        default_preset = "default" if "default" in presets else next(iter(presets))
    if default_preset is not None:
        if not isinstance(default_preset, str):
            raise fail(f"default_preset = {default_preset!r} must be a string")
        if default_preset not in presets:
            raise fail(f"default_preset = {default_preset!r} is not one of the presets "
                       f"{sorted(presets)}")

    if "modalities" not in top:
        raise fail("the key 'modalities' is missing")
    modalities_raw = require_mapping(top["modalities"], "modalities")
    if not modalities_raw:
        raise fail("modalities must define at least one modality")

    def check_roles(value: Ratio, where: str) -> None:
        if not isinstance(value, str):
            return
        if not presets:
            raise fail(f"{where} = {value!r} names a preset role but the bank defines no presets")
        for preset_name, roles in presets.items():
            if value not in roles:
                raise fail(
                    f"{where} = {value!r} is not a role of preset {preset_name!r} "
                    f"(roles: {sorted(roles)})"
                )

    modalities: Dict[str, ModalitySpec] = {}
    for name, body in modalities_raw.items():
        where = f"modalities.{name}"
        if not isinstance(name, str) or not name:
            raise fail(f"modality names must be non-empty strings, got {name!r}")
        body = require_mapping(body, where)
        reject_unknown(body, _MODALITY_KEYS, where)
        if "background" not in body:
            raise fail(f"{where}.background is missing: give the masking ratio of the background")
        if "prompts" not in body:
            raise fail(f"{where}.prompts is missing")
        prompts_raw = body["prompts"]
        if not isinstance(prompts_raw, Sequence) or isinstance(prompts_raw, (str, bytes)):
            raise fail(f"{where}.prompts must be a list, got {type(prompts_raw).__name__}")
        if not prompts_raw:
            raise fail(f"{where}.prompts must hold at least one prompt")
        prompts = []
        for i, entry in enumerate(prompts_raw):
            pwhere = f"{where}.prompts[{i}]"
            entry = require_mapping(entry, pwhere)
            reject_unknown(entry, _PROMPT_KEYS, pwhere)
            if "text" not in entry or "ratio" not in entry:
                raise fail(f"{pwhere} needs both 'text' and 'ratio'")
            text = entry["text"]
            if not isinstance(text, str) or not text.strip():
                raise fail(f"{pwhere}.text = {text!r} must be a non-empty string")
            ratio = ratio_value(entry["ratio"], f"{pwhere}.ratio")
            check_roles(ratio, f"{pwhere}.ratio")
            prompts.append(PromptSpec(text, ratio))
        texts = [p.text for p in prompts]
        if len(set(texts)) != len(texts):
            raise fail(f"{where}.prompts repeats a prompt text: {texts}")
        background = ratio_value(body["background"], f"{where}.background")
        check_roles(background, f"{where}.background")
        threshold = number(body.get("threshold", DEFAULT_THRESHOLD), f"{where}.threshold")
        components = body.get("num_components", DEFAULT_NUM_COMPONENTS)
        if components is not None and (
            isinstance(components, bool) or not isinstance(components, int) or components < 1
        ):
            raise fail(
                f"{where}.num_components = {components!r} must be a positive integer or null")
        expand = number(body.get("expand_ratio", 1.0), f"{where}.expand_ratio")
        if expand <= 0:
            raise fail(f"{where}.expand_ratio = {expand!r} must be positive")
        description = body.get("description", "")
        if not isinstance(description, str):
            raise fail(f"{where}.description must be a string, got {type(description).__name__}")
        modalities[name] = ModalitySpec(
            name=name,
            prompts=tuple(prompts),
            background=background,
            threshold=threshold,
            num_components=components,
            expand_ratio=expand,
            description=description,
        )
    return PromptBank(
        modalities=modalities, presets=presets, default_preset=default_preset, source=source
    )


# --------------------------------------------------------------------------------------------
# what a masker needs


def _as_bank(bank: Union[PromptBank, str, os.PathLike]) -> PromptBank:
    if isinstance(bank, PromptBank):
        return bank
    if isinstance(bank, (str, os.PathLike)):
        return load_prompt_bank(bank)
    raise TypeError(f"bank must be a PromptBank or a path, got {type(bank).__name__}")


def masker_kwargs_from_prompt_bank(
    bank: Union[PromptBank, str, os.PathLike],
    modality: str,
    *,
    preset: Optional[str] = None,
    policy: str = "per_region",
) -> Dict[str, Any]:
    """Keyword arguments of `mwm.TextGuidedMasker` for one modality of a bank.

    Returns {"thresholds": [...], "region_ratios": [background, level 1, ...], "policy": ...}.
    The thresholds read the level maps of `bank_region_map`: level l of L sits at l / L and the
    thresholds are (l - 0.5) / L, so region index = level and region 0 is the background.
    """
    prompts = _as_bank(bank).modality(modality, preset)
    ratios = prompts.level_ratios
    count = len(ratios)
    return {
        "thresholds": [(level - 0.5) / count for level in range(1, count + 1)],
        "region_ratios": [prompts.background_ratio, *ratios],
        "policy": policy,
    }


def bank_region_map(
    heatmaps,
    prompts: ModalityPrompts,
    *,
    grid: Optional[Sequence[int]] = None,
    spatial_dims: int = 2,
) -> torch.Tensor:
    """Per-prompt heatmaps (B, K, *S) to one level map for `masker_kwargs_from_prompt_bank`.

    Prompt k's heatmap goes through the MWM region pipeline with the modality's threshold,
    num_components and expand_ratio; its ROI gets prompt k's level, the highest level wins where
    ROIs overlap. With `grid`, the level map is at patch resolution (nearest), which makes every
    heatmap-to-patch reduction of the masker exact.
    """
    if not isinstance(prompts, ModalityPrompts):
        raise TypeError(
            f"prompts must be a ModalityPrompts (PromptBank.modality(...)), "
            f"got {type(prompts).__name__}"
        )
    maps = torch.as_tensor(heatmaps)
    if maps.dim() == spatial_dims + 1 and len(prompts.prompts) == 1:
        maps = maps.unsqueeze(1)
    if maps.dim() != spatial_dims + 2 or maps.shape[1] != len(prompts.prompts):
        raise ValueError(
            f"heatmaps must be (B, K, *S) with K = {len(prompts.prompts)} prompts of modality "
            f"{prompts.name!r} ({', '.join(map(repr, prompts.texts))}), "
            f"got shape {tuple(maps.shape)}"
        )
    rois = [
        mwm_region_map(
            maps[:, k],
            threshold=prompts.threshold,
            num_components=prompts.num_components,
            expand_ratio=prompts.expand_ratio,
            grid=grid,
            spatial_dims=spatial_dims,
        )
        for k in range(maps.shape[1])
    ]
    return region_level_map(torch.stack(rois, dim=1), prompts.prompt_levels,
                            len(prompts.level_ratios))
