import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from mwm import cli
from mwm.grounding import mwm_region_map
from mwm.grounding.image_io import list_images, read_image

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64


def blob(center, radius, size=SIZE, peak=1.0):
    y, x = np.mgrid[0:size, 0:size] + 0.5
    return (peak * np.exp(-(((y - center[0]) ** 2 + (x - center[1]) ** 2)
                            / radius**2))).astype(np.float32)


def write_dicom(path, pixels, slope=2.0, intercept=-100.0):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture()
def dataset(tmp_path):
    """a.png (gray), b.jpg (RGB), c.dcm, d.nii.gz (3 slices); heatmaps as .npy/.npz/volume."""
    images, heatmaps = tmp_path / "images", tmp_path / "heatmaps"
    images.mkdir()
    heatmaps.mkdir()
    rng = np.random.default_rng(0)
    gray = (rng.random((SIZE, SIZE)) * 255).astype(np.uint8)
    Image.fromarray(gray).save(images / "a.png")
    Image.fromarray((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)).save(images / "b.jpg")
    write_dicom(images / "c.dcm", (rng.random((SIZE, SIZE)) * 1000).astype(np.uint16))
    volume = rng.random((SIZE, SIZE, 3)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(images / "d.nii.gz"))
    (images / "notes.txt").write_text("not an image")
    np.save(heatmaps / "a.npy", blob((16, 16), 10))
    np.savez(heatmaps / "b.npz", heatmap=blob((24, 8), 6, size=32))  # half resolution
    np.save(heatmaps / "c.npy", np.maximum(blob((48, 48), 8), blob((10, 50), 5, peak=0.6)))
    np.save(heatmaps / "d.npy", np.stack([blob((32, 32), 6 + 4 * z) for z in range(3)], axis=-1))
    return tmp_path, images, heatmaps


def run(*args):
    return cli.main(["mask", *map(str, args), "--quiet"])


def load(path):
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.keys()}


def test_mask_writes_one_npz_and_overlay_per_image(dataset):
    root, images, heatmaps = dataset
    out = root / "out"
    assert run("--images", images, "--heatmaps", heatmaps, "--out", out, "--grid", 4, 4) == 0
    ids = ["a", "b", "c", "d_z000", "d_z001", "d_z002"]
    assert sorted(p.name for p in out.glob("*.npz")) == [f"{i}.npz" for i in ids]
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i}_overlay.png" for i in ids]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    for name in ids:
        data = load(out / f"{name}.npz")
        mask, region = data["mask"], data["region_map"].reshape(-1)
        assert mask.shape == (16,) and mask.dtype == bool
        assert tuple(data["grid"]) == (4, 4) and tuple(data["image_shape"]) == (SIZE, SIZE)
        assert data["num_masked"] == mask.sum()
        assert (sorted(np.concatenate([data["ids_keep"], data["ids_masked"]]).tolist())
                == list(range(16)))
        assert not mask[data["ids_keep"]].any() and mask[data["ids_masked"]].all()
        for r, ratio in enumerate([0.4, 0.8]):  # the default preset, per region
            n = int((region == r).sum())
            assert int(mask[region == r].sum()) == n - int(n * (1 - ratio))
        with Image.open(out / f"{name}_overlay.png") as overlay:
            assert overlay.size == (SIZE, SIZE) and overlay.mode == "RGB"
    # The region map is the MWM pipeline on the image's own heatmap, on the 4x4 grid.
    expected = mwm_region_map(torch.from_numpy(np.load(heatmaps / "c.npy"))[None], grid=(4, 4))[0]
    assert np.array_equal(load(out / "c.npz")["region_map"] > 0, expected.numpy())
    volume = np.load(heatmaps / "d.npy")
    expected = mwm_region_map(torch.from_numpy(volume[..., 2].copy())[None], grid=(4, 4))[0]
    assert np.array_equal(load(out / "d_z002.npz")["region_map"] > 0, expected.numpy())


def test_masks_are_reproducible_and_follow_the_seed(dataset):
    root, images, heatmaps = dataset
    for name, seed in (("one", 0), ("two", 0), ("three", 5)):
        assert run("--images", images, "--heatmaps", heatmaps, "--out", root / name,
                   "--seed", seed) == 0
    masks = {n: [load(root / n / f"{i}.npz")["mask"] for i in ("a", "b", "c")]
             for n in ("one", "two", "three")}
    assert all(np.array_equal(x, y) for x, y in zip(masks["one"], masks["two"]))
    assert any(not np.array_equal(x, y) for x, y in zip(masks["one"], masks["three"]))
    assert load(root / "one" / "a.npz")["mask"].shape == (49,)  # default grid 7x7


def test_readers_return_the_stored_values(dataset):
    _, images, _ = dataset
    items = {item.id: item for item in list_images(images)}
    assert list(items) == ["a", "b", "c", "d_z000", "d_z001", "d_z002"]
    assert np.array_equal(read_image(items["a"]),
                          np.asarray(Image.open(images / "a.png"), dtype=np.float32))
    assert read_image(items["b"]).shape == (SIZE, SIZE, 3)
    import pydicom

    raw = pydicom.dcmread(str(images / "c.dcm")).pixel_array.astype(np.float32)
    assert np.array_equal(read_image(items["c"]), raw * 2.0 - 100.0)
    volume = np.asarray(nibabel.load(str(images / "d.nii.gz")).dataobj)
    assert np.array_equal(read_image(items["d_z001"]), volume[..., 1])


def test_a_bad_file_is_named_and_the_run_continues(dataset, capsys):
    root, images, heatmaps = dataset
    (images / "b2.png").write_bytes(b"definitely not a png")
    np.save(heatmaps / "b2.npy", blob((8, 8), 4))
    out = root / "out"
    assert run("--images", images, "--heatmaps", heatmaps, "--out", out) == 1
    err = capsys.readouterr().err
    assert "b2.png" in err and "cannot read image" in err
    assert len(list(out.glob("*.npz"))) == 6 and not (out / "b2.npz").exists()


def test_stop_on_error_keeps_what_was_written(dataset, capsys):
    root, images, heatmaps = dataset
    # b.npy wins over b.npz
    np.save(heatmaps / "b.npy", np.full((SIZE, SIZE), 3.0, dtype=np.float32))
    out = root / "out"
    assert run("--images", images, "--heatmaps", heatmaps, "--out", out, "--on-error", "stop") == 1
    err = capsys.readouterr().err
    assert ("b.jpg: heatmap values span [3, 3], outside [0, 1]" in err
            and "--normalize-heatmaps" in err)
    assert sorted(p.name for p in out.glob("*.npz")) == ["a.npz"]
    # With normalization the same heatmap is accepted (a constant map normalizes to zeros).
    assert run("--images", images, "--heatmaps", heatmaps, "--out", out,
               "--normalize-heatmaps") == 0


def test_missing_heatmap_names_the_image(dataset, capsys):
    root, images, heatmaps = dataset
    (heatmaps / "c.npy").unlink()
    assert run("--images", images, "--heatmaps", heatmaps, "--out", root / "out") == 1
    err = capsys.readouterr().err
    assert "c.dcm: no heatmap c.npy or c.npz" in err


def test_boxes_json_and_patch_size(dataset, capsys):
    root, images, _ = dataset
    boxes = {
        "normalized": False,
        "boxes": {
            "a": [{"box": [0, 0, 32, 32], "score": 0.9}],
            "b": [{"box": [32, 32, 64, 64]}],
            "c": [],
            **{f"d_z00{z}": [{"box": [16, 16, 48, 48], "score": 0.5}] for z in range(3)},
        },
    }
    path = root / "boxes.json"
    path.write_text(json.dumps(boxes))
    out = root / "out"
    assert run("--images", images, "--boxes", path, "--out", out, "--patch-size", 16) == 0
    expected_a = np.zeros((4, 4), dtype=np.float32)
    expected_a[:2, :2] = 1
    assert np.array_equal(load(out / "a.npz")["region_map"], expected_a)
    assert np.array_equal(load(out / "b.npz")["region_map"], expected_a[::-1, ::-1])
    assert load(out / "c.npz")["region_map"].sum() == 0
    assert load(out / "d_z001.npz")["region_map"][1:3, 1:3].all()
    # A patch size that does not divide the image is an error naming the file.
    assert run("--images", images, "--boxes", path, "--out", root / "bad", "--patch-size", 24) == 1
    assert ("a.png: image size 64x64 is not divisible by --patch-size 24 24"
            in capsys.readouterr().err)
    boxes["boxes"]["a"] = [{"box": [0, 0, 32], "score": 0.9}]
    path.write_text(json.dumps(boxes))
    assert run("--images", images, "--boxes", path, "--out", root / "bad2") == 1
    assert "boxes['a'][0].box = [0, 0, 32] must be 4 numbers" in capsys.readouterr().err


def test_prompt_bank_regions(dataset):
    root, images, _ = dataset
    heatmaps = root / "two_prompts"
    heatmaps.mkdir()
    for item in list_images(images):
        tumor, tissue = blob((20, 20), 8), blob((32, 32), 40, peak=0.9)
        np.save(heatmaps / f"{item.id}.npy", np.stack([tumor, tissue]))
    out = root / "out"
    bank = ROOT / "examples" / "prompt_banks" / "brain_mri_levels.yaml"
    assert run("--images", images, "--heatmaps", heatmaps, "--out", out, "--prompt-bank", bank,
               "--modality", "brain_mri", "--grid", 8, 8) == 0
    data = load(out / "a.npz")
    levels = data["region_map"].reshape(-1)
    assert set(np.unique(levels).tolist()) <= {0.0, 0.5, 1.0}
    assert (levels == 1.0).any() and (levels == 0.5).any()
    for value, ratio in ((0.0, 0.2), (0.5, 0.5), (1.0, 0.8)):
        n = int((levels == value).sum())
        assert int(data["mask"][levels == value].sum()) == n - int(n * (1 - ratio))


def test_usage_errors_return_status_2(dataset, capsys):
    root, images, heatmaps = dataset
    assert run("--images", root / "nowhere", "--heatmaps", heatmaps, "--out", root / "o") == 2
    assert "nowhere" in capsys.readouterr().err
    assert run("--images", images, "--heatmaps", heatmaps, "--out", root / "o",
               "--region-ratios", 0.1, 0.2, 0.3) == 2
    assert run("--images", images, "--heatmaps", heatmaps, "--out", root / "o",
               "--modality", "brain_mri") == 2
    with pytest.raises(SystemExit):
        cli.main(["mask", "--images", str(images)])  # argparse: --out and a source are required


def test_threshold_regions_use_patch_means(dataset):
    root, images, heatmaps = dataset
    out = root / "out"
    assert run("--images", images, "--heatmaps", heatmaps, "--out", out, "--grid", 4, 4,
               "--regions", "threshold", "--threshold", 0.2, "--no-overlays") == 0
    assert not list(out.glob("*.png"))
    heat = torch.from_numpy(np.load(heatmaps / "a.npy"))
    means = heat.reshape(4, 16, 4, 16).mean(dim=(1, 3))
    assert np.array_equal(load(out / "a.npz")["region_map"] > 0, (means > 0.2).numpy())


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.npz"
    target.write_bytes(b"old")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(cli.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        cli._atomic_write(target, b"new")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_progress_bar_and_summary_go_to_stderr(dataset, capsys):
    root, images, heatmaps = dataset
    status = cli.main(["mask", "--images", str(images), "--heatmaps", str(heatmaps),
                       "--out", str(root / "out"), "--no-overlays"])
    assert status == 0
    err = capsys.readouterr().err
    assert "mwm mask: 100%" in err and "6/6" in err  # tqdm's bar
    assert "wrote 6 of 6 masks" in err


def test_heatmaps_from_one_npz_keyed_by_id_or_one_stacked_npy(dataset):
    root, images, heatmaps = dataset
    ids = [item.id for item in list_images(images)]
    maps = {i: blob((8 + 8 * k, 40), 6) for k, i in enumerate(ids)}
    np.savez(root / "all.npz", **maps)
    np.save(root / "all.npy", np.stack([maps[i] for i in ids]))
    for source in ("all.npz", "all.npy"):
        out = root / source.replace(".", "_")
        assert run("--images", images, "--heatmaps", root / source, "--out", out,
                   "--grid", 8, 8, "--no-overlays") == 0
        for i in ("a", "d_z001"):
            expected = mwm_region_map(torch.from_numpy(maps[i])[None], grid=(8, 8))[0].numpy()
            assert np.array_equal(load(out / f"{i}.npz")["region_map"] > 0, expected)
    np.save(root / "short.npy", np.stack([maps[i] for i in ids[:2]]))
    assert run("--images", images, "--heatmaps", root / "short.npy", "--out", root / "o") == 2


def test_bad_configs_are_named_and_lose_no_output(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for name in ("s0", "s1", "s2"):
        pixels = (rng.random((SIZE, SIZE)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{name}.png")
    good = [{"box": [8, 8, 40, 40], "score": 0.9}]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"normalized": False,
                                 "boxes": {"s0": good, "s1": [{"box": [1, 2, 3]}], "s2": good}}))
    out = tmp_path / "out"
    assert run("--images", images, "--boxes", boxes, "--out", out, "--grid", 4, 4) == 1
    err = capsys.readouterr().err
    assert "s1.png" in err and "boxes['s1'][0].box = [1, 2, 3] must be 4 numbers" in err
    assert sorted(p.name for p in out.glob("*.npz")) == ["s0.npz", "s2.npz"]
    # A bank with a bad entry is a usage error before anything is written; what was written stays.
    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps({"modalities": {"x": {"prompts": [{"text": "t", "ratio": 0.8}]}}}))
    assert run("--images", images, "--boxes", boxes, "--out", out, "--prompt-bank", bank,
               "--modality", "x") == 2
    assert "modalities.x.background is missing" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.npz")) == ["s0.npz", "s2.npz"]
    (tmp_path / "broken.json").write_text("{oops")
    assert run("--images", images, "--boxes", tmp_path / "broken.json", "--out", out) == 2
    assert "broken.json: not valid JSON" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# mwm regions: text prompts -> heatmaps and ROI maps, with tiny random models saved locally

REGION_OPTIONS = ("--layer", 1, "--steps", 2, "--samples", 2, "--quiet")


@pytest.fixture(scope="module")
def local_models(tmp_path_factory, tiny_hf_clip, tiny_sam):
    """A tiny random CLIPModel + CLIPTokenizer and a tiny random SAM, saved with save_pretrained."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import CLIPTokenizer

    root = tmp_path_factory.mktemp("models")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "tumor</w>": 3, "edema</w>": 4,
             "brain</w>": 5, "a</w>": 6, "t": 7, "u": 8}
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), pad_token="!",
                              model_max_length=16)
    clip = tiny_hf_clip()
    clip.config.text_config.eos_token_id = 1
    clip.text_model.eos_token_id = 1
    clip.save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")
    model, processor = tiny_sam()
    model.save_pretrained(root / "sam")
    processor.save_pretrained(root / "sam")
    return root / "clip", root / "sam"


def regions(*args):
    return cli.main(["regions", *map(str, args)])


def test_regions_then_mask_end_to_end(dataset, local_models):
    root, images, _ = dataset
    clip, _ = local_models
    out = root / "regions"
    assert regions("--images", images, "--clip", clip, "--prompt", "tumor", "--prompt", "edema",
                   "--out", out, "--batch-size", 4, *REGION_OPTIONS) == 0
    ids = [item.id for item in list_images(images)]
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(ids) and len(ids) == 6
    assert not list(out.glob("*.tmp"))
    for item_id in ids:
        data = load(out / f"{item_id}.npz")
        assert data["heatmap"].shape == (2, SIZE, SIZE) and data["heatmap"].dtype == np.float32
        assert 0.0 <= data["heatmap"].min() and data["heatmap"].max() <= 1.0
        assert data["roi"].shape == (2, SIZE, SIZE) and set(np.unique(data["roi"])) <= {0, 1}
        heat = torch.from_numpy(data["heatmap"])
        expected = mwm_region_map(heat, threshold=0.3, num_components=2)
        assert np.array_equal(data["roi"].astype(bool), expected.numpy())
        assert np.array_equal(data["region_map"], data["roi"].any(0).astype(np.float32))
        assert list(data["prompts"]) == ["tumor", "edema"]
    masks = root / "masks"
    assert run("--images", images, "--heatmaps", out, "--regions", "roi", "--out", masks,
               "--grid", 8, 8) == 0
    for item_id in ids:
        roi = load(out / f"{item_id}.npz")["roi"].any(0)
        mask = load(masks / f"{item_id}.npz")
        # nearest on the 8x8 grid
        assert np.array_equal(mask["region_map"], roi[::8, ::8].astype(np.float32))
    again = root / "masks_mwm"  # the heatmaps alone through the reference region step
    assert run("--images", images, "--heatmaps", out, "--out", again, "--grid", 8, 8) == 0
    assert len(list(again.glob("*.npz"))) == 6


@pytest.mark.slow
def test_regions_runs_from_a_fresh_interpreter(dataset, local_models, tmp_path):
    """As a shell runs `mwm regions`: a new process imports transformers' CLIP itself (in this
    venv torchvision needs mwm.grounding.torchvision_compat to import at all)."""
    root, images, _ = dataset
    clip, _ = local_models
    out = tmp_path / "regions"
    package_root = str(Path(cli.__file__).resolve().parents[1])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, (package_root,
                                                      os.environ.get("PYTHONPATH"))))}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from mwm import cli; sys.exit(cli.main(sys.argv[1:]))",
         "regions", "--images", str(images), "--clip", str(clip), "--prompt", "tumor",
         "--out", str(out), *map(str, REGION_OPTIONS)],
        capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(out.glob("*.npz"))) == len(list_images(images)) == 6


def test_regions_resume_and_batching(dataset, local_models, capsys):
    root, images, _ = dataset
    clip, _ = local_models
    out, single = root / "regions", root / "single"
    common = ("--images", images, "--clip", clip, "--prompt", "tumor", *REGION_OPTIONS)
    assert regions(*common, "--out", out, "--batch-size", 3) == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.npz")}
    assert regions(*common, "--out", out) == 0  # everything exists: nothing is rewritten
    assert {p.name: p.read_bytes() for p in out.glob("*.npz")} == before
    (out / "a.npz").unlink()
    assert regions(*common[:-1], "--out", out) == 0
    assert "5 of 6 already in" in capsys.readouterr().err
    assert np.allclose(load(out / "a.npz")["heatmap"], _npz(before["a.npz"])["heatmap"], atol=1e-4)
    assert regions(*common, "--out", single, "--batch-size", 1) == 0
    for name, payload in before.items():
        alone = load(single / name)["heatmap"]
        assert np.allclose(alone, _npz(payload)["heatmap"], atol=1e-4), name


def _npz(payload):
    import io

    with np.load(io.BytesIO(payload)) as archive:
        return {key: archive[key] for key in archive.keys()}


def test_regions_with_sam_and_a_prompt_bank(dataset, local_models):
    root, images, _ = dataset
    clip, sam = local_models
    out = root / "regions_sam"
    bank = ROOT / "examples" / "prompt_banks" / "brain_mri_levels.yaml"
    assert regions("--images", images, "--clip", clip, "--sam", sam, "--prompt-bank", bank,
                   "--modality", "brain_mri", "--out", out, *REGION_OPTIONS) == 0
    data = load(out / "a.npz")
    assert data["heatmap"].shape[0] == data["roi"].shape[0] == len(data["prompts"]) == 2
    assert set(np.unique(data["region_map"]).tolist()) <= {0.0, 0.5, 1.0}
    masks = root / "masks_sam"
    assert run("--images", images, "--heatmaps", out, "--regions", "roi", "--prompt-bank", bank,
               "--modality", "brain_mri", "--out", masks, "--grid", 8, 8) == 0
    assert np.array_equal(load(masks / "a.npz")["region_map"], data["region_map"][::8, ::8])


def test_regions_usage_errors(dataset, local_models, capsys):
    root, images, _ = dataset
    clip, _ = local_models
    common = ("--images", images, "--prompt", "tumor", "--out", root / "o", "--quiet")
    if not torch.cuda.is_available():
        assert regions(*common, "--clip", clip, "--device", "cuda") == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert regions(*common, "--clip", root / "nowhere") == 2
    assert "nowhere" in capsys.readouterr().err
    assert regions(*common, "--clip", clip, "--batch-size", 0) == 2
    assert "--batch-size 0" in capsys.readouterr().err
    assert regions(*common, "--clip", clip, "--modality", "brain_mri") == 2
    assert regions(*common, "--clip", clip, "--layer", 9) == 2
    assert "layer = 9" in capsys.readouterr().err


def test_regions_isolate_the_image_a_batch_fails_on(dataset, local_models, capsys, monkeypatch):
    from mwm.grounding.pipeline import TextRegionPipeline

    root, images, _ = dataset
    clip, _ = local_models
    original = TextRegionPipeline.__call__

    def failing_on_dicom(self, batch):
        if any(float(np.max(image)) > 300 for image in batch):  # only c.dcm holds such values
            raise RuntimeError("attribution failed")
        return original(self, batch)

    monkeypatch.setattr(TextRegionPipeline, "__call__", failing_on_dicom)
    out = root / "regions"
    assert regions("--images", images, "--clip", clip, "--prompt", "tumor", "--out", out,
                   "--batch-size", 6, *REGION_OPTIONS) == 1
    err = capsys.readouterr().err
    assert "c.dcm: attribution failed" in err and "1 image(s) failed" in err
    assert sorted(p.stem for p in out.glob("*.npz")) == ["a", "b", "d_z000", "d_z001", "d_z002"]
