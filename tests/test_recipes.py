"""Recipes ship as package data, resolve by name, and compose with `base:`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deepgen.errors import DeepgenError
from deepgen.train import load_config
from deepgen.train.config import packaged_recipes, recipe_path

ROOT = Path(__file__).resolve().parents[1]


def test_packaged_names_and_paths_resolve():
    assert {"erm", "sbi", "dann", "supcon", "full", "artifacts", "tune"} <= set(packaged_recipes())
    assert load_config("full").name == "full"
    assert load_config(recipe_path("full")).name == "full"  # a path still works
    with pytest.raises(DeepgenError, match="recipe 'fulll' is neither a file nor a packaged recipe; .* full"):
        load_config("fulll")


def test_base_recipe_is_overridden_key_by_key(tmp_path):
    child = tmp_path / "mine.yaml"
    child.write_text("base: full\nname: mine\nepochs: 2\nmodel:\n  image_size: 48\n")
    full, mine = load_config("full"), load_config(str(child))
    assert (mine.name, mine.epochs, mine.model.image_size) == ("mine", 2, 48)
    assert mine.model.backbone == full.model.backbone and mine.lambda_supcon == full.lambda_supcon
    art = load_config("artifacts")
    assert art.model.boundary_head and art.lambda_boundary > 0 and art.sbi_prob == full.sbi_prob
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(DeepgenError, match="form a cycle"):
        load_config(str(loop))


def test_a_wheel_holds_the_recipes_and_they_resolve_when_installed(tmp_path):
    src, wheels = tmp_path / "src", tmp_path / "wheels"  # build from a copy: nothing lands in the checkout
    shutil.copytree(ROOT / "deepgen", src / "deepgen", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(src)], check=True, capture_output=True)
    wheel = next(wheels.glob("deepgen-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"deepgen/configs/{n}.yaml" for n in ("erm", "full", "artifacts", "tune")} <= set(names)
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import deepgen, sys; from deepgen.train import load_config; assert deepgen.__file__.startswith(sys.argv[1]);"
            " print(load_config('artifacts').name)")
    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "artifacts"
