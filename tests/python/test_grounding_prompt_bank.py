import copy
import json
from pathlib import Path

import pytest
import torch

import mwm
from mwm.grounding import (
    ModalityPrompts,
    PromptBankError,
    bank_region_map,
    load_prompt_bank,
    masker_kwargs_from_prompt_bank,
    prompt_bank_from_dict,
)

ROOT = Path(__file__).resolve().parents[2]
MEDICAL = ROOT / "examples" / "prompt_banks" / "medical.json"
LEVELS = ROOT / "examples" / "prompt_banks" / "brain_mri_levels.yaml"

VALID = {
    "version": 1,
    "presets": {"default": {"high": 0.8, "low": 0.4}, "light": {"high": 0.6, "low": 0.2}},
    "modalities": {
        "brain_mri": {
            "prompts": [{"text": "tumor", "ratio": "high"}, {"text": "brain tissue", "ratio": 0.5}],
            "background": "low",
        }
    },
}


def test_shipped_medical_bank_has_the_paper_presets():
    bank = load_prompt_bank(MEDICAL)
    assert set(bank.names) == {"brain_mri", "chest_ct", "chest_xray"}
    assert bank.default_preset == "default"
    for name in bank.names:
        prompts = bank.modality(name)
        assert isinstance(prompts, ModalityPrompts)
        assert [p.ratio for p in prompts.prompts] == [0.8] and prompts.background_ratio == 0.4
        assert prompts.threshold == 0.3 and prompts.num_components == 2
    # The file's presets are the ones the masker knows as MWM_PRESETS.
    for preset, (high, low) in mwm.MWM_PRESETS.items():
        chosen = bank.modality("chest_xray", preset=preset)
        assert (chosen.prompts[0].ratio, chosen.background_ratio) == (high, low)


def test_masker_kwargs_for_one_prompt_are_the_paper_setting():
    kwargs = masker_kwargs_from_prompt_bank(load_prompt_bank(MEDICAL), "brain_mri")
    assert kwargs == {"thresholds": [0.5], "region_ratios": [0.4, 0.8], "policy": "per_region"}
    light = masker_kwargs_from_prompt_bank(MEDICAL, "brain_mri", preset="light")
    assert light["region_ratios"] == [0.2, 0.6]


def test_yaml_bank_with_three_regions():
    bank = load_prompt_bank(LEVELS)
    prompts = bank.modality("brain_mri")
    assert prompts.texts == ("a brain tumor in an MRI scan", "brain tissue")
    assert prompts.prompt_levels == (2, 1) and prompts.expand_ratio == 1.1
    kwargs = masker_kwargs_from_prompt_bank(bank, "brain_mri")
    assert kwargs["thresholds"] == [0.25, 0.75]
    assert kwargs["region_ratios"] == [0.2, 0.5, 0.8]


def test_equal_ratios_share_a_level():
    data = copy.deepcopy(VALID)
    data["modalities"]["brain_mri"]["prompts"].append({"text": "edema", "ratio": 0.8})
    prompts = prompt_bank_from_dict(data).modality("brain_mri")
    assert prompts.level_ratios == (0.5, 0.8) and prompts.prompt_levels == (2, 1, 2)


def test_level_map_through_the_real_masker_masks_each_region_at_its_ratio():
    bank = load_prompt_bank(LEVELS)
    prompts = bank.modality("brain_mri")
    heat = torch.zeros(2, 2, 56, 56)
    heat[:, 1, 8:48, 8:48] = 0.9  # brain tissue
    heat[0, 0, 16:32, 16:32] = 0.95  # tumor inside it, image 0 only
    levels = bank_region_map(heat, prompts, grid=(7, 7))
    assert levels.shape == (2, 7, 7)
    assert set(levels.unique().tolist()) <= {0.0, 0.5, 1.0}
    masker = mwm.TextGuidedMasker(grid=(7, 7), seed=3,
                                  **masker_kwargs_from_prompt_bank(bank, "brain_mri"))
    result = masker(levels)
    ratios = [0.2, 0.5, 0.8]
    for b in range(2):
        region = torch.bucketize(levels[b].reshape(-1), torch.tensor([0.25, 0.75]), right=True)
        for r, ratio in enumerate(ratios):
            cells = region == r
            n = int(cells.sum())
            masked = int(result.mask[b][cells].sum())
            assert masked == n - int(n * (1 - ratio)), (b, r, n)
    assert (levels[0] == 1.0).sum() > 0 and (levels[1] == 1.0).sum() == 0


def test_masker_from_config_reads_the_bank():
    masker = mwm.TextGuidedMasker.from_config(str(MEDICAL), "chest_ct", grid=(7, 7))
    assert masker.thresholds == [0.5] and masker.region_ratios == [0.4, 0.8]


def test_single_prompt_region_map_accepts_heatmaps_without_a_prompt_axis():
    prompts = load_prompt_bank(MEDICAL).modality("chest_xray")
    heat = torch.zeros(1, 14, 14)
    heat[0, 2:6, 2:6] = 1.0
    levels = bank_region_map(heat, prompts, grid=(7, 7))
    assert levels.sum() == 4.0
    with pytest.raises(ValueError, match="K = 1 prompts of modality 'chest_xray'"):
        bank_region_map(torch.zeros(1, 3, 14, 14), prompts)


def _broken(mutate):
    data = copy.deepcopy(VALID)
    mutate(data)
    return data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["modalities"]["brain_mri"].pop("background"),
         r"brain_mri\.background is missing"),
        (lambda d: d["modalities"]["brain_mri"]["prompts"][1].update(ratio=1.5),
         r"prompts\[1\]\.ratio = 1\.5 is out of range"),
        (lambda d: d["modalities"]["brain_mri"].update(background=-0.1),
         r"background = -0\.1 is out of range"),
        (lambda d: d["modalities"]["brain_mri"]["prompts"][0].update(ratio="medium"),
         r"'medium' is not a role of preset"),
        (lambda d: d["modalities"]["brain_mri"].update(prompts="tumor"),
         r"prompts must be a list, got str"),
        (lambda d: d["modalities"]["brain_mri"]["prompts"][0].update(text=3),
         r"prompts\[0\]\.text = 3"),
        (lambda d: d["modalities"]["brain_mri"]["prompts"][1].update(ratio=True),
         r"must be a number, got bool"),
        (lambda d: d["modalities"]["brain_mri"].update(threshold="0.3"),
         r"threshold = '0\.3' must be a number"),
        (lambda d: d["modalities"]["brain_mri"].update(num_components=0),
         r"num_components = 0"),
        (lambda d: d["modalities"]["brain_mri"].update(colour="red"),
         r"unknown key\(s\) \['colour'\]"),
        (lambda d: d.update(modalities=[]), r"modalities must be a mapping, got list"),
        (lambda d: d.pop("modalities"), r"'modalities' is missing"),
        (lambda d: d.pop("presets"), r"names a preset role but the bank defines no presets"),
        (lambda d: d.update(default_preset="heavy"), r"default_preset = 'heavy'"),
        (lambda d: d["presets"]["light"].update(high=2),
         r"presets\.light\.high = 2 is out of range"),
        (lambda d: d.update(version=2), r"version = 2"),
    ],
)
def test_invalid_banks_raise_clear_errors(mutate, message):
    with pytest.raises(PromptBankError, match=message):
        prompt_bank_from_dict(_broken(mutate), source="bank.json")


def test_unknown_modality_and_preset_list_the_known_ones():
    bank = prompt_bank_from_dict(VALID, source="bank.json")
    with pytest.raises(PromptBankError,
                       match=r"modality = 'knee_mri' .*known modalities: brain_mri"):
        masker_kwargs_from_prompt_bank(bank, "knee_mri")
    with pytest.raises(PromptBankError, match=r"preset = 'heavy' .*known presets: default, light"):
        bank.modality("brain_mri", preset="heavy")
    with pytest.raises(ValueError, match=r"modality = 'knee_mri'"):  # callers catching bad input
        masker_kwargs_from_prompt_bank(bank, "knee_mri")


def test_file_errors_name_the_file(tmp_path):
    bad_json = tmp_path / "bank.json"
    bad_json.write_text("{not json")
    with pytest.raises(PromptBankError, match=r"bank\.json' is not valid json"):
        load_prompt_bank(bad_json)
    bad_yaml = tmp_path / "bank.yaml"
    bad_yaml.write_text("modalities: [unclosed")
    with pytest.raises(PromptBankError, match=r"bank\.yaml' is not valid YAML"):
        load_prompt_bank(bad_yaml)
    wrong_kind = tmp_path / "bank.toml"
    wrong_kind.write_text("")
    with pytest.raises(PromptBankError, match=r"extension '\.toml'"):
        load_prompt_bank(wrong_kind)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_prompt_bank(tmp_path / "missing.json")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(VALID))
    assert load_prompt_bank(good).source == str(good)
    data = copy.deepcopy(VALID)
    data["modalities"]["brain_mri"]["background"] = 7
    good.write_text(json.dumps(data))
    with pytest.raises(PromptBankError, match=r"good\.json: modalities\.brain_mri\.background = 7"):
        load_prompt_bank(good)
