"""Issue 24, findings 5 and 6: recipes, manifests, S3 failures and report inputs end in one sentence
(checked before Ray starts), never a traceback or a silently wrong value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from deepgen import storage
from deepgen.cli import main
from deepgen.errors import DeepgenError
from deepgen.train import load_config


def _one_sentence(msg: str) -> str:
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def _cli_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: "), err[-2000:]
    return _one_sentence(err)


# --- recipes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("override,match", [
    ({"lr": float("nan")}, "lr is nan; set it to a finite number"),
    ({"lr": float("inf")}, "lr is inf"),
    ({"lambda_domain": float("nan")}, "lambda_domain is nan"),
    ({"supcon_temperature": -0.1}, "supcon_temperature is -0.1"),
    ({"supcon_temperature": 0.0}, "supcon_temperature is 0.0"),
    ({"crop_margin": -0.3}, "crop_margin is -0.3"),
    ({"amp": "yes"}, "amp is 'yes'; set it to true or false"),
    ({"sbi_only": "false"}, "sbi_only is 'false'"),
    ({"epochs": 1e23}, "epochs is 1e\\+23; set it to a whole number"),
    ({"epochs": 10**23}, "epochs is 100000000000000000000000; use at most"),
    ({"epochs": True}, "epochs is True"),
    ({"model.pretrained": "no"}, "model.pretrained is 'no'"),
    ({"model.dropout": float("nan")}, "model.dropout is nan"),
    ({"perturb.jpeg_quality": [95, 40]}, "perturb.jpeg_quality"),
    ({"perturb.blur_p": float("nan")}, "perturb.blur_p is nan"),
])
def test_recipe_values_are_typed_finite_and_in_range(override, match):
    with pytest.raises(DeepgenError, match=match) as e:
        load_config("erm", override)
    _one_sentence(str(e.value))


def test_base_resolves_next_to_the_recipe_and_self_reference_is_one_sentence(tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    (recipes / "team").mkdir(parents=True)
    (recipes / "team" / "parent.yaml").write_text("base: erm\nname: parent\nepochs: 4\n")
    (recipes / "child.yaml").write_text("base: team/parent.yaml\nname: child\n")
    (recipes / "team" / "sibling.yaml").write_text("base: parent.yaml\nlr: 0.002\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the base is found next to the recipe, not in the working directory
    cfg = load_config(str(recipes / "child.yaml"))
    assert cfg.name == "child" and cfg.epochs == 4
    sib = load_config(str(recipes / "team" / "sibling.yaml"))
    assert sib.name == "parent" and sib.lr == 0.002
    for text in ("base: ./self.yaml\n", "base: self.yaml\n", "base: ../recipes/self.yaml\n"):
        (recipes / "self.yaml").write_text(text)
        with pytest.raises(DeepgenError, match="base recipes form a cycle") as e:
            load_config(str(recipes / "self.yaml"))
        _one_sentence(str(e.value))
    (recipes / "a.yaml").write_text("base: ./b.yaml\n")
    (recipes / "b.yaml").write_text("base: ./a.yaml\n")
    with pytest.raises(DeepgenError, match="cycle"):
        load_config(str(recipes / "a.yaml"))


# --- manifests --------------------------------------------------------------------------------------

def _manifest_rows(**change) -> list[dict]:
    rows = [{"media_id": f"t/{i}.png", "uri": f"/nowhere/{i}.png", "label": i % 2, "dataset": "t", "method": "real",
             "split": "test", "source_id": str(i), "compression": "raw", "media_type": "image"} for i in range(3)]
    rows[1].update(change)
    return rows


def test_null_media_id_or_uri_fails_manifest_validation():
    from deepgen.schema import validate_manifest

    for col in ("media_id", "uri"):
        for bad in (None, "", "  "):
            with pytest.raises(DeepgenError, match=f"row 1 has {col}") as e:
                validate_manifest(pa.Table.from_pylist(_manifest_rows(**{col: bad})))
            _one_sentence(str(e.value))


def test_score_manifest_with_string_labels_or_null_ids_is_refused_before_ray(tmp_path, tiny_bundle, capsys):
    for i, (change, match) in enumerate([({"label": "fake"}, "row 0 (t/0.png) has label 'real'; use 1 for fake"),
                                          ({"label": "1"}, "row 0 (t/0.png) has label '0'"),
                                          ({"media_id": None}, "row 1 has media_id None"),
                                          ({"uri": None}, "row 1 has uri None")]):
        rows = _manifest_rows(**change)
        if "label" in change:  # a column of strings: "real"/"fake" or "0"/"1"
            for r in rows:
                r["label"] = ("fake" if r["label"] else "real") if change["label"] == "fake" else str(r["label"])
        path = str(tmp_path / f"m{i}.parquet")
        storage.write_table(pa.Table.from_pylist(rows), path)
        err = _cli_error(capsys, ["score", "--manifest", path, "--checkpoint", tiny_bundle,
                                  "--out", str(tmp_path / f"o{i}")])
        assert match in err


def test_rescore_with_a_null_uri_is_one_sentence(tmp_path, tiny_bundle, capsys):
    path = str(tmp_path / "incoming.parquet")
    storage.write_table(pa.Table.from_pylist([{"media_id": "a", "uri": "/x/a.png"}, {"media_id": "b", "uri": None}]),
                        path)
    err = _cli_error(capsys, ["rescore", "--incoming", path, "--checkpoint", tiny_bundle,
                              "--store", str(tmp_path / "store"), "--date", "2026-11-25"])
    assert "row 1 has uri None" in err


# --- S3 without credentials or endpoint -------------------------------------------------------------

@pytest.fixture
def s3_unreachable(monkeypatch):
    """S3 pointed at a closed local port (nothing listens on port 9): fails at once, reaches nothing."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the message, not the retry back-off, is under test
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3_no_credentials(s3_unreachable, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _s3_cases(tmp_path, tiny_bundle) -> list[list[str]]:
    manifest = str(tmp_path / "m.parquet")
    storage.write_table(pa.Table.from_pylist(_manifest_rows()), manifest)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base: s3://recipes/full.yaml\n")
    return [
        ["score", "--manifest", "s3://media/manifest.parquet", "--checkpoint", tiny_bundle, "--out",
         str(tmp_path / "o")],
        ["extract", "--manifest", "s3://media/manifest.parquet", "--out", str(tmp_path / "f")],
        ["score", "--manifest", manifest, "--checkpoint", tiny_bundle, "--out", "s3://results/scores"],
        ["train", "--config", str(recipe), "--faces", str(tmp_path), "--out", str(tmp_path / "run")],
    ]


def test_s3_unreachable_endpoint_is_one_sentence(s3_unreachable, tmp_path, tiny_bundle, capsys):
    for argv in _s3_cases(tmp_path, tiny_bundle):
        err = _cli_error(capsys, argv)
        assert "s3://" in err and "endpoint http://127.0.0.1:9 did not answer" in err, (argv, err)


def test_s3_without_credentials_is_one_sentence(s3_no_credentials, tmp_path, tiny_bundle, capsys):
    for argv in _s3_cases(tmp_path, tiny_bundle):
        err = _cli_error(capsys, argv)
        assert "s3://" in err and "no S3 credentials" in err, (argv, err)


# --- evaluation -------------------------------------------------------------------------------------

def _frames(n: int = 48) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    video = np.arange(n) // 2
    return pd.DataFrame({
        "media_id": [f"m{v}" for v in video], "frame_index": np.arange(n) % 2, "label": video % 2,
        "dataset": np.where(video % 4 < 2, "$x^$", r"$\alpha$"),
        "method": np.where(video % 2 == 0, "real", np.where(video % 3 == 0, "A", "B")),
        "logit": rng.normal(size=n) + video % 2, "features": list(rng.normal(size=(n, 4)).astype(np.float32)),
    })


def test_subgroup_method_is_reported(tmp_path):
    from deepgen.evaluation.run import _load_faces, video_predictions
    from deepgen.evaluation.subgroups import subgroup_metrics

    videos, _ = video_predictions(_frames(), 1.0, ["method"])
    assert list(videos.columns).count("method") == 1
    sg = subgroup_metrics(videos, ["method"])
    assert set(sg["table"]["group"]) == {"real", "A", "B"}
    faces = str(tmp_path / "faces.parquet")
    table = pa.Table.from_pandas(_frames().drop(columns=["logit", "features"]).assign(image=b"x"))
    storage.write_table(table, faces)
    assert _load_faces([faces], "all", ["method"]).column_names.count("method") == 1
    with pytest.raises(DeepgenError, match="no faces table has a column 'skin' for --subgroup") as e:
        _load_faces([faces], "all", ["skin"])
    _one_sentence(str(e.value))


def test_report_plots_draw_mathtext_names_literally(tmp_path):
    from deepgen.evaluation.report import write_report
    from deepgen.evaluation.run import video_predictions

    videos, _ = video_predictions(_frames(), 1.0, [])
    page = write_report(str(tmp_path), videos, train_datasets=["$x^$"])
    assert (tmp_path / "plots" / "roc.png").stat().st_size > 0
    assert "$x^$" in open(page).read()
