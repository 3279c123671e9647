"""The `mwm` command line. `mwm mask` turns a folder of images plus heatmaps (or detector
boxes) into MWM patch masks, one .npz and one overlay PNG per image. `mwm regions` makes those
heatmaps and ROI maps from text prompts with the user's CLIP model (M2IB), optionally SAM.

    mwm regions --images DIR --clip PATH [--sam PATH] (--prompt TEXT [--prompt TEXT ...] |
                --prompt-bank FILE --modality NAME) --out DIR [--batch-size 8] [--device cuda]

    mwm mask --images DIR (--heatmaps FILE|DIR | --boxes FILE) --out DIR
             [--grid GH GW | --patch-size P] [--preset default|medium|light]
             [--prompt-bank FILE --modality NAME] [--policy per_region] [--seed 0]

Every output is written atomically (a temporary file renamed into place), so an interrupted
or failing run never leaves a half-written file and keeps what it already wrote. A file that
cannot be used is reported on stderr with its name; with `--on-error continue` (the default)
the run goes on and exits with status 1 at the end, with `--on-error stop` it stops there.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["main", "build_parser"]

# Result fields written to each .npz (when the masker's result has them).
_RESULT_FIELDS = ("mask", "num_masked", "ids_keep", "ids_masked", "ids_restore", "ids_shuffle",
                  "noise")


class InputError(ValueError):
    """An input file that cannot be used; the message names it."""


# --------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mwm", description="Mask What Matters tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    mask = commands.add_parser(
        "mask",
        help="heatmaps or boxes to patch masks (.npz) and overlays (.png)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mask.add_argument("--images", required=True, type=Path,
                      help="folder of .png/.jpg/.jpeg/.dcm/.nii/.nii.gz images "
                           "(3D NIfTI: one item per slice)")
    source = mask.add_mutually_exclusive_group(required=True)
    source.add_argument("--heatmaps", type=Path,
                        help="folder with <id>.npy/.npz per image "
                             "(a NIfTI volume may have one <stem>.npy "
                             "whose last axis is the slice), or one .npz keyed by image id")
    source.add_argument("--boxes", type=Path,
                        help='JSON: {"normalized": false, '
                             '"boxes": {"<id>": [{"box": [x0, y0, x1, y1], "score": 0.9}]}}')
    mask.add_argument("--out", required=True, type=Path, help="output folder (created)")
    size = mask.add_mutually_exclusive_group()
    size.add_argument("--grid", nargs=2, type=int, metavar=("GH", "GW"),
                      help="patch grid (default 7 7)")
    size.add_argument("--patch-size", nargs="+", type=int, metavar="P",
                      help="patch size in pixels (P or PH PW): grid = image size / patch size")
    mask.add_argument("--preset", default="default", choices=["default", "medium", "light"],
                      help="MWM (ROI, background) ratios: "
                           "default 0.8/0.4, medium 0.7/0.3, light 0.6/0.2")
    mask.add_argument("--region-ratios", nargs="+", type=float, metavar="R",
                      help="masking ratio per region, background first (overrides --preset)")
    mask.add_argument("--prompt-bank", type=Path,
                      help="prompt bank (.json/.yaml); heatmaps are (K, H, W) per its prompts")
    mask.add_argument("--modality", help="modality of the prompt bank")
    mask.add_argument("--regions", default="mwm", choices=["mwm", "threshold", "roi"],
                      help="mwm: the reference pipeline (threshold, k largest components, boxes); "
                           "threshold: patch-mean heatmap > --threshold; "
                           "roi: use the ROI maps that "
                           "`mwm regions` wrote (the 'roi' array of --heatmaps DIR/<id>.npz) "
                           "as they are")
    mask.add_argument("--threshold", type=float, default=0.3,
                      help="heatmap threshold (default 0.3)")
    mask.add_argument("--components", type=int, default=2,
                      help="largest components kept (default 2)")
    mask.add_argument("--expand-ratio", type=float, default=1.0,
                      help="component box scale (default 1.0)")
    mask.add_argument("--normalize-heatmaps", action="store_true",
                      help="min-max scale each heatmap to [0, 1] "
                           "(otherwise values outside [0, 1] are an error)")
    mask.add_argument("--policy", default="per_region", help="masking policy (default per_region)")
    mask.add_argument("--ratio", type=float, default=None,
                      help="overall ratio for fixed-total policies")
    mask.add_argument("--seed", type=int, default=0,
                      help="mask seed; image i of the listing is sample i")
    mask.add_argument("--on-error", default="continue", choices=["continue", "stop"],
                      help="after a bad file: go on (exit status 1 at the end) "
                           "or stop (default continue)")
    mask.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    mask.add_argument("--quiet", action="store_true", help="no progress bar")
    mask.set_defaults(run=run_mask)
    from .cli_regions import add_regions_parser

    add_regions_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point `mwm`; returns the exit status (0 ok, 1 some inputs failed, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (InputError, ValueError, FileNotFoundError) as exc:
        print(f"mwm {args.command}: error: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------------------------
# mask


def run_mask(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import mwm

    from .grounding.image_io import ImageReadError, list_images, read_image

    items = list_images(args.images)
    if not items:
        raise FileNotFoundError(
            f"no images (.png, .jpg, .jpeg, .dcm, .nii, .nii.gz) in {str(args.images)!r}")
    plan = _MaskPlan(args)
    if args.regions == "roi" and args.heatmaps is None:
        raise ValueError("--regions roi reads the ROI maps of `mwm regions`: give --heatmaps DIR")
    source = (_BoxSource(args.boxes) if args.boxes is not None
              else _HeatmapSource(args.heatmaps, items,
                                  "roi" if args.regions == "roi" else "heatmap"))
    args.out.mkdir(parents=True, exist_ok=True)

    failures: List[str] = []
    written = 0
    progress = tqdm(items, desc="mwm mask", unit="image", disable=args.quiet, file=sys.stderr)
    for index, item in enumerate(progress):
        try:
            image = read_image(item)
            heat = source.heatmap(item, image.shape[:2])
            heat = _check_heatmap(heat, item, plan.num_prompts, args.normalize_heatmaps)
            grid = plan.grid_for(image.shape[:2], item)
            region_map, scores_input = plan.regions(heat, grid)
            masker = plan.masker(grid, mwm)
            result = masker(scores_input[None], offset=index)
            _write_outputs(args.out, item.id, result, region_map, grid, image, heat,
                           not args.no_overlays)
            written += 1
        except (InputError, ImageReadError, ValueError, RuntimeError, OSError) as exc:
            message = str(exc) if str(item.path) in str(exc) else f"{item.path}: {exc}"
            failures.append(message)
            progress.write(f"mwm mask: error: {message}", file=sys.stderr)
            if args.on_error == "stop":
                progress.close()
                print(f"mwm mask: stopped after {written} written; "
                      f"outputs so far are in {args.out}",
                      file=sys.stderr)
                return 1
    progress.close()
    if not args.quiet:
        print(f"mwm mask: wrote {written} of {len(items)} masks to {args.out}", file=sys.stderr)
    if failures:
        print(f"mwm mask: {len(failures)} image(s) failed", file=sys.stderr)
        return 1
    return 0


class _MaskPlan:
    """The run-wide choices: grid rule, regions, ratios, policy."""

    def __init__(self, args: argparse.Namespace):
        from .grounding.prompt_bank import load_prompt_bank, masker_kwargs_from_prompt_bank

        self.args = args
        self.prompts = None
        if (args.prompt_bank is None) != (args.modality is None):
            raise ValueError("--prompt-bank and --modality go together")
        if args.prompt_bank is not None:
            bank = load_prompt_bank(args.prompt_bank)
            self.prompts = bank.modality(args.modality,
                                         args.preset if args.preset in bank.presets else None)
            kwargs = masker_kwargs_from_prompt_bank(bank, args.modality, preset=self.prompts.preset,
                                                    policy=args.policy)
            self.thresholds = kwargs["thresholds"]
            self.region_ratios = kwargs["region_ratios"]
            if args.region_ratios is not None:
                raise ValueError("--region-ratios cannot be combined with --prompt-bank "
                                 "(the bank sets them)")
            if args.regions == "threshold":
                raise ValueError("--prompt-bank needs --regions mwm or roi")
        else:
            from .masker import MWM_PRESETS

            high, low = MWM_PRESETS[args.preset]
            self.region_ratios = list(args.region_ratios) if args.region_ratios else [low, high]
            regions = len(self.region_ratios)
            if args.regions in ("mwm", "roi"):
                if regions != 2:
                    raise ValueError(
                        f"--region-ratios {self.region_ratios}: "
                        "the MWM pipeline gives background and ROI, "
                        "so give 2 ratios (or use a prompt bank for more regions)"
                    )
                self.thresholds = [0.5]
            else:
                if regions != 2:
                    raise ValueError(f"--region-ratios {self.region_ratios}: "
                                     "--regions threshold takes 2 ratios")
                self.thresholds = [args.threshold]
        if args.patch_size is not None and len(args.patch_size) not in (1, 2):
            raise ValueError(f"--patch-size {args.patch_size}: give P or PH PW")
        self._maskers: Dict[tuple, object] = {}

    @property
    def num_prompts(self) -> Optional[int]:
        return None if self.prompts is None else len(self.prompts.prompts)

    def grid_for(self, shape, item) -> tuple:
        if self.args.grid is not None:
            grid = tuple(self.args.grid)
            if min(grid) < 1:
                raise ValueError(f"--grid {grid}: sizes must be positive")
            return grid
        if self.args.patch_size is None:
            return (7, 7)
        ph, pw = ((self.args.patch_size * 2)[:2] if len(self.args.patch_size) == 1
                  else self.args.patch_size)
        height, width = shape
        if ph < 1 or pw < 1 or height % ph or width % pw:
            raise InputError(
                f"{item.path}: image size {height}x{width} is not divisible "
                f"by --patch-size {ph} {pw}"
            )
        return (height // ph, width // pw)

    def regions(self, heat: torch.Tensor, grid: tuple):
        """(level map on the grid, what the masker reads) from heatmaps (K, h, w)."""
        from .grounding.prompt_bank import bank_region_map
        from .grounding.regions import mwm_region_map

        if self.args.regions == "roi":
            return self._given_regions(heat, grid)
        if self.prompts is not None:
            levels = bank_region_map(heat[None], self.prompts, grid=grid)[0]
            return levels, levels
        combined = heat.amax(dim=0)
        if self.args.regions == "mwm":
            roi = mwm_region_map(
                combined[None], threshold=self.args.threshold, num_components=self.args.components,
                expand_ratio=self.args.expand_ratio, grid=grid,
            )[0].to(torch.float32)
            return roi, roi
        from .masking import heatmap_to_patch_scores

        scores = heatmap_to_patch_scores(combined[None], list(grid))[0]
        return (scores > self.thresholds[0]).to(torch.float32).reshape(grid), combined

    def _given_regions(self, roi: torch.Tensor, grid: tuple):
        """ROI maps (K, h, w) as `mwm regions` wrote them -> the level map on the grid (nearest)."""
        from .grounding.adapters import resize_maps
        from .grounding.regions import region_level_map

        inside = roi > 0.5
        if self.prompts is not None:
            levels = region_level_map(inside[None], self.prompts.prompt_levels,
                                      len(self.prompts.level_ratios))[0]
        else:
            levels = inside.any(dim=0).to(torch.float32)
        levels = resize_maps(levels[None], grid, mode="nearest")[0]
        return levels, levels

    def masker(self, grid: tuple, mwm):
        if grid not in self._maskers:
            options = dict(grid=grid, thresholds=self.thresholds, region_ratios=self.region_ratios,
                           policy=self.args.policy, seed=self.args.seed)
            if self.args.ratio is not None:
                options["ratio"] = self.args.ratio
            self._maskers[grid] = mwm.TextGuidedMasker(**options)
        return self._maskers[grid]


def _check_heatmap(heat: np.ndarray, item, num_prompts: Optional[int],
                   normalize: bool) -> torch.Tensor:
    array = np.asarray(heat)
    if array.dtype == bool:
        array = array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{item.path}: heatmap has dtype {array.dtype}, not numbers")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(
            f"{item.path}: heatmap must be (H, W) or (K, H, W), got shape {array.shape}")
    if num_prompts is not None and array.shape[0] != num_prompts:
        raise InputError(
            f"{item.path}: heatmap has {array.shape[0]} prompt map(s) "
            "but the prompt bank modality has "
            f"{num_prompts} prompts"
        )
    if not np.isfinite(array).all():
        raise InputError(f"{item.path}: heatmap holds NaN or infinity")
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if normalize:
        from .grounding.adapters import normalize_maps

        tensor = normalize_maps(tensor, 2)
    elif float(tensor.min()) < 0.0 or float(tensor.max()) > 1.0:
        raise InputError(
            f"{item.path}: heatmap values span "
            f"[{float(tensor.min()):.4g}, {float(tensor.max()):.4g}], "
            "outside [0, 1] (pass --normalize-heatmaps to min-max scale them)"
        )
    return tensor


# --------------------------------------------------------------------------------------------
# heatmap sources


class _HeatmapSource:
    def __init__(self, location: Path, items, key: str = "heatmap"):
        self.key = key
        self.location = location
        self.items = items
        self.file_arrays = None
        if location.is_dir():
            return
        if not location.is_file():
            raise FileNotFoundError(f"--heatmaps {str(location)!r} does not exist")
        suffix = location.suffix.lower()
        if suffix == ".npz":
            self.file_arrays = np.load(location)
        elif suffix == ".npy":
            stacked = np.load(location)
            if stacked.shape[0] != len(items):
                raise InputError(
                    f"{location}: a stacked .npy must hold one heatmap per image ({len(items)}), "
                    f"has {stacked.shape[0]}"
                )
            self.file_arrays = {item.id: stacked[i] for i, item in enumerate(items)}
        else:
            raise InputError(f"{location}: --heatmaps must be a folder, a .npz or a .npy file")

    def heatmap(self, item, image_shape) -> np.ndarray:
        if self.file_arrays is not None:
            if item.id not in self.file_arrays:
                raise InputError(f"{self.location}: no heatmap for image {item.id!r} ({item.path})")
            return self.file_arrays[item.id]
        for suffix in (".npy", ".npz"):
            path = self.location / f"{item.id}{suffix}"
            if path.is_file():
                return _load_array(path, self.key)
        if item.slice_index is not None:
            for suffix in (".npy", ".npz"):
                path = self.location / f"{item.volume_stem}{suffix}"
                if path.is_file():
                    volume = _load_array(path, self.key)
                    if volume.ndim not in (3, 4) or item.slice_index >= volume.shape[-1]:
                        raise InputError(
                            f"{path}: a volume heatmap must be (H, W, Z) or (K, H, W, Z) "
                            "with slice "
                            f"{item.slice_index}, got shape {volume.shape}"
                        )
                    return volume[..., item.slice_index]
        raise InputError(
            f"{item.path}: no heatmap {item.id}.npy or {item.id}.npz in {self.location}"
        )


def _load_array(path: Path, key: str = "heatmap") -> np.ndarray:
    try:
        if path.suffix == ".npy":
            if key != "heatmap":
                raise InputError(f"{path}: a .npy holds no {key!r} array; "
                                 "--regions roi reads the .npz "
                                 "files of `mwm regions`")
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if key in keys:
                return archive[key]
            if key == "heatmap" and len(keys) == 1:
                return archive[keys[0]]
            raise InputError(f"{path}: holds {keys}; "
                             f"name the {'heatmap' if key == 'heatmap' else key} "
                             f"array {key!r}")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read heatmap ({type(exc).__name__}: {exc})") from exc


class _BoxSource:
    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"--boxes {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("boxes"), dict):
            raise InputError(
                f'{path}: expected {{"boxes": {{"<image id>": [...]}}}} at the top level')
        normalized = data.get("normalized", False)
        if not isinstance(normalized, bool):
            raise InputError(f"{path}: 'normalized' must be true or false, got {normalized!r}")
        self.path = path
        self.normalized = normalized
        self.boxes = data["boxes"]

    def heatmap(self, item, image_shape) -> np.ndarray:
        from .grounding.adapters import boxes_to_heatmap

        if item.id not in self.boxes:
            raise InputError(f"{self.path}: no entry for image {item.id!r} ({item.path})")
        entries = self.boxes[item.id]
        if not isinstance(entries, list):
            raise InputError(
                f"{self.path}: boxes[{item.id!r}] must be a list of {{'box', 'score'}} objects")
        corners, scores = [], []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "box" not in entry:
                raise InputError(
                    f"{self.path}: boxes[{item.id!r}][{i}] must be an object with a 'box'")
            box, score = entry["box"], entry.get("score", 1.0)
            if (not isinstance(box, list) or len(box) != 4
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in box)):
                raise InputError(
                    f"{self.path}: boxes[{item.id!r}][{i}].box = {box!r} must be 4 numbers")
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise InputError(
                    f"{self.path}: boxes[{item.id!r}][{i}].score = {score!r} must be a number")
            corners.append(box)
            scores.append(score)
        try:
            heat = boxes_to_heatmap(
                [torch.tensor(corners, dtype=torch.float64).reshape(-1, 4)], tuple(image_shape),
                [torch.tensor(scores, dtype=torch.float64)], normalized=self.normalized,
            )
        except ValueError as exc:
            raise InputError(f"{self.path}: image {item.id!r}: {exc}") from exc
        return heat[0].numpy()


# --------------------------------------------------------------------------------------------
# outputs


def _atomic_write(target: Path, payload: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _write_outputs(out: Path, name: str, result, region_map: torch.Tensor, grid: tuple,
                   image: np.ndarray, heat: torch.Tensor, overlay: bool) -> None:
    arrays = {}
    for field in _RESULT_FIELDS:
        value = getattr(result, field, None)
        if value is None:
            continue
        array = (value[0].detach().cpu().numpy() if isinstance(value, torch.Tensor)
                 else np.asarray(value))
        if field in ("ids_keep", "ids_masked"):
            array = array[array >= 0]  # a single image needs no -1 padding
        arrays[field] = array
    arrays["region_map"] = region_map.detach().cpu().numpy().reshape(grid).astype(np.float32)
    arrays["grid"] = np.asarray(grid, dtype=np.int64)
    arrays["image_shape"] = np.asarray(image.shape[:2], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    _atomic_write(out / f"{name}.npz", buffer.getvalue())
    if overlay:
        from .viz import overlay_rgb, save_png

        display = image if image.ndim == 2 else image[..., :3]
        picture = overlay_rgb(
            display, heatmap=heat.amax(dim=0), region_map=arrays["region_map"],
            mask=arrays["mask"].reshape(grid),
        )
        save_png(picture, out / f"{name}_overlay.png")


if __name__ == "__main__":
    sys.exit(main())
