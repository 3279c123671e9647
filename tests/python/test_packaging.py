"""The wheel ships the package's typing marker (PEP 561), as scikit-build-core maps the files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_py_typed():
    from scikit_build_core.build._pathutil import iter_package_files

    assert (ROOT / "python" / "mwm" / "py.typed").is_file()
    targets = {
        target.as_posix()
        for _, target in iter_package_files(
            packages={"mwm": str(ROOT / "python" / "mwm")}, include=[], src_exclude=[],
            target_exclude=[], build_dir=str(ROOT / "build" / "wheel-files"), mode="default")
    }
    assert "mwm/py.typed" in targets
    assert "mwm/__init__.py" in targets
