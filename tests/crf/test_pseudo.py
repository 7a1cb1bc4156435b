"""``deeplabv2 crf`` and ``deeplabv2.crf.pseudo_label``: pseudo-labels from CAMs, against the
papers' recipes written here with pydensecrf itself (IRN's ``crf_inference_label`` +
``cam_to_ir_label``, PSA's ``crf_inference`` + ``_crf_with_alpha`` + the la/ha combination)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deeplabv2.cli import main
from deeplabv2.cli.crf import RECORD
from deeplabv2.crf import (
    PSEUDO_LABEL_RECIPES,
    Scores,
    get_backend,
    load_scores,
    pseudo_label,
)
from deeplabv2.crf.synthetic import coarse_probs
from deeplabv2.data.images import read_label

from ..signals import cpu_seconds, descendants, start_in_session, stop_with, wait_for
from ..test_interrupts import temporaries
from .photos import photo

dcrf = pytest.importorskip("pydensecrf.densecrf", reason="the references need pydensecrf2")
utils = pytest.importorskip("pydensecrf.utils")

PHOTOS = {"chelsea": (8, 7, 14), "astronaut": (1, 0), "coffee": (2, 4, 10, 18)}  # seed, keys
NATIVE = ["torch"] + (["numba"] if get_backend("numba").available() else [])


@pytest.fixture(autouse=True)
def one_thread():
    """Small images: one thread is faster (and numba's spinning threads are slow on a busy
    machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def image_of(name: str) -> np.ndarray:
    """Real photos, cropped small (the tests stay fast): 201x150, 170x130, 180x140."""
    crops = {
        "chelsea": ("chelsea-451x300", np.s_[50:200, 150:351]),
        "astronaut": ("astronaut-257x193", np.s_[:130, :170]),
        "coffee": ("coffee-500x375", np.s_[100:240, 150:330]),
    }
    full, crop = crops[name]
    return np.ascontiguousarray(photo(full)[crop])


def cams_of(image: np.ndarray, keys: tuple[int, ...], seed: int) -> np.ndarray:
    """``(K, H, W) float32`` CAMs in [0, 1] following the image's colours, each normalised by
    its maximum as IRN's make_cam.py does (the first 3 colour clusters are left out: the
    background)."""
    probs = coarse_probs(image, len(keys) + 3, seed=seed, temperature=20)[3:]
    return (probs / (probs.max(axis=(1, 2), keepdims=True) + 1e-5)).astype(np.float32)


# ---- the references: the papers' code, with pydensecrf ----


def irn_crf_inference_label(img, labels, n_labels, t=10, gt_prob=0.7):
    h, w = img.shape[:2]
    d = dcrf.DenseCRF2D(w, h, n_labels)
    d.setUnaryEnergy(utils.unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(img)), compat=10)
    q = d.inference(t)
    return np.argmax(np.array(q).reshape((n_labels, h, w)), axis=0)


def irn_cam_to_ir_label(img, cams, keys, fg_thres=0.30, bg_thres=0.05):
    keys = np.pad(keys + 1, (1, 0), mode="constant")
    fg_conf_cam = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=fg_thres)
    fg_conf = keys[irn_crf_inference_label(img, np.argmax(fg_conf_cam, axis=0), keys.shape[0])]
    bg_conf_cam = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=bg_thres)
    bg_conf = keys[irn_crf_inference_label(img, np.argmax(bg_conf_cam, axis=0), keys.shape[0])]
    conf = fg_conf.copy()
    conf[fg_conf == 0] = 255
    conf[bg_conf + fg_conf == 0] = 0
    return conf.astype(np.uint8)


def psa_crf_inference(img, probs, labels, t=10):
    h, w = img.shape[:2]
    d = dcrf.DenseCRF2D(w, h, labels)
    d.setUnaryEnergy(np.ascontiguousarray(utils.unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.copy(img), compat=10)
    return np.array(d.inference(t)).reshape((labels, h, w))


def psa_labels(img, cams, keys, low_alpha=4, high_alpha=32):
    classes = np.concatenate(([0], keys + 1))
    runs = []
    for alpha in (low_alpha, high_alpha):
        bg_score = np.power(1 - np.max(cams, axis=0, keepdims=True), alpha)
        bgcam_score = np.concatenate((bg_score, cams), axis=0)
        runs.append(psa_crf_inference(img, bgcam_score, bgcam_score.shape[0]).argmax(0))
    label_la, label_ha = runs
    label = classes[label_la]
    label[label_la == 0] = 255
    label[label_ha == 0] = 0
    return label.astype(np.uint8)


# ---- files ----


def write_inputs(tmp_path: Path, layout: str = "npz") -> tuple[Path, Path, dict]:
    images, scores = tmp_path / "images", tmp_path / "cams"
    images.mkdir()
    scores.mkdir()
    data = {}
    for name, (seed, *keys) in PHOTOS.items():
        image = image_of(name)
        Image.fromarray(image).save(images / f"{name}.png")
        keys = np.array(keys, dtype=np.int64)
        cams = cams_of(image, keys, seed)
        if layout == "npz":
            np.savez(scores / f"{name}.npz", high_res=cams, keys=keys)
        else:  # IRN's own: np.save of a dict (pickled)
            np.save(scores / f"{name}.npy", {"keys": keys, "high_res": cams})
        data[name] = (image, cams, keys)
    return images, scores, data


def test_irn_recipe_equals_pydensecrf_pixel_for_pixel(tmp_path, capsys):
    images, scores, data = write_inputs(tmp_path)
    out = tmp_path / "labels"
    args = ["crf", str(images), str(scores), "--out", str(out), "--crf-params", "irn"]
    assert main([*args, "--crf-backend", "pydensecrf", "--crf-workers", "0", "--quiet"]) == 0
    assert "wrote 3 pseudo-labels" in capsys.readouterr().out
    for name, (image, cams, keys) in data.items():
        expected = irn_cam_to_ir_label(image, cams, keys)
        labels = read_label(out / f"{name}.png")
        assert np.array_equal(labels, expected), name
        assert {0, 255} <= set(np.unique(expected).tolist())  # fg, bg and unsure all occur
        assert set(np.unique(expected).tolist()) - {0, 255} <= set((keys + 1).tolist())
        assert len(set(np.unique(expected).tolist()) - {0, 255}) >= 1
        assert Image.open(out / f"{name}.png").mode == "L"  # grayscale indices, as IRN writes


@pytest.mark.parametrize("backend", NATIVE)
def test_native_backends_agree_with_the_irn_reference(backend):
    image, (seed, *keys) = image_of("coffee"), PHOTOS["coffee"]
    keys = np.array(keys)
    cams = cams_of(image, keys, seed)
    expected = irn_cam_to_ir_label(image, cams, keys)
    got = pseudo_label(image, Scores(cams, keys), PSEUDO_LABEL_RECIPES["irn"], backend=backend)
    assert (got.labels == expected).mean() >= 0.999


@pytest.mark.parametrize("backend", ["pydensecrf", *NATIVE])
def test_psa_recipe_equals_pydensecrf(backend):
    image, (seed, *keys) = image_of("chelsea"), PHOTOS["chelsea"]
    keys = np.array(keys)
    cams = cams_of(image, keys, seed)
    expected = psa_labels(image, cams, keys)
    got = pseudo_label(image, Scores(cams, keys), PSEUDO_LABEL_RECIPES["psa"], backend=backend)
    assert got.probs.shape == (2, 3, *image.shape[:2])  # two runs, background + 2 CAMs
    assert np.array_equal(got.classes, [0, 8, 15])
    agreement = (got.labels == expected).mean()
    assert agreement == 1.0 if backend == "pydensecrf" else agreement >= 0.999
    assert {0, 255} <= set(np.unique(expected).tolist()) and 8 in expected


def test_predict_probs_with_deeplab_crf(tmp_path):
    """``predict --probs`` output (float16 (C, H, W) ``<stem>_probs.npy``) refined with
    ``DenseCRF()``'s parameters: pydensecrf's ``unary_from_softmax`` on the same numbers."""
    image = image_of("astronaut")
    probs = coarse_probs(image, 5, seed=3).astype(np.float16)
    (tmp_path / "im").mkdir()
    (tmp_path / "sc").mkdir()
    Image.fromarray(image).save(tmp_path / "im" / "a.jpg", quality=100)
    np.save(tmp_path / "sc" / "a_probs.npy", probs)
    jpeg = np.array(Image.open(tmp_path / "im" / "a.jpg").convert("RGB"))
    args = ["crf", str(tmp_path / "im"), str(tmp_path / "sc"), "--out", str(tmp_path / "o")]
    args += ["--crf-backend", "pydensecrf", "--crf-workers", "0", "--quiet", "--save-probs"]
    assert main(args) == 0
    h, w = image.shape[:2]
    d = dcrf.DenseCRF2D(w, h, 5)
    d.setUnaryEnergy(utils.unary_from_softmax(probs.astype(np.float32)))
    d.addPairwiseGaussian(sxy=1, compat=3)
    d.addPairwiseBilateral(sxy=67, srgb=3, rgbim=np.ascontiguousarray(jpeg), compat=4)
    q = np.array(d.inference(10)).reshape(5, h, w)
    assert np.array_equal(read_label(tmp_path / "o" / "a.png"), q.argmax(0))
    saved = np.load(tmp_path / "o" / "a_probs.npz")
    assert saved["probs"].shape == (1, 5, h, w) and saved["probs"].dtype == np.float16
    assert np.array_equal(saved["classes"], np.arange(5))
    assert np.abs(saved["probs"][0].astype(np.float32) - q).max() < 2e-3


class _Payload:
    """Unpickling this touches the marker file: the code a pickle can run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickles_only_with_allow_pickle(tmp_path, capsys):
    images, scores, data = write_inputs(tmp_path, layout="pickle")
    marker = tmp_path / "pwned"
    np.save(scores / "chelsea.npy", {"keys": _Payload(str(marker)), "high_res": data["chelsea"][1]})
    assert b"touch" in (scores / "chelsea.npy").read_bytes()  # the payload is in the file
    out = tmp_path / "labels"
    assert main(["crf", str(images), str(scores), "--out", str(out), "--crf-params", "irn",
                 "--crf-workers", "0", "--quiet"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "--allow-pickle" in err and "runs code" in err and "chelsea.npy" in err
    assert not marker.exists()
    with pytest.raises(ValueError, match="allow-pickle"):
        load_scores(scores / "chelsea.npy")
    assert not marker.exists()
    # IRN's own pickles, trusted: read with the flag, same labels as the .npz layout
    os.remove(scores / "chelsea.npy")
    np.save(scores / "chelsea.npy", {"keys": data["chelsea"][2], "high_res": data["chelsea"][1]})
    assert main(["crf", str(images), str(scores), "--out", str(out), "--crf-params", "irn",
                 "--allow-pickle", "--crf-backend", "pydensecrf", "--crf-workers", "0",
                 "--quiet"]) == 0  # fmt: skip
    image, cams, keys = data["chelsea"]
    assert np.array_equal(read_label(out / "chelsea.png"), irn_cam_to_ir_label(image, cams, keys))


def test_resume_skips_finished_images(tmp_path, capsys):
    images, scores, _ = write_inputs(tmp_path)
    out = tmp_path / "labels"
    args = ["crf", str(images), str(scores), "--out", str(out), "--bg-threshold", "0.2",
            "--crf-backend", "pydensecrf", "--crf-workers", "0", "--quiet"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    kept = out / "coffee.png"
    os.utime(kept, (1, 1))
    (out / "chelsea.png").unlink()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 pseudo-labels" in printed and "2 already there" in printed
    assert (out / "chelsea.png").exists() and kept.stat().st_mtime == 1
    assert main([*args, "--force"]) == 0
    assert kept.stat().st_mtime > 1
    assert not list(out.glob("*tmp*")) and [p.name for p in out.glob(".*")] == [RECORD]


def test_min_confidence_marks_unsure_pixels(tmp_path):
    image, (seed, *keys) = image_of("astronaut"), PHOTOS["astronaut"]
    scores = Scores(cams_of(image, np.array(keys), seed), np.array(keys))
    recipe = PSEUDO_LABEL_RECIPES["psa"]
    plain = pseudo_label(image, scores, recipe, backend="pydensecrf")
    strict = pseudo_label(image, scores, recipe, backend="pydensecrf", min_confidence=0.9)
    confidence = plain.probs.max(axis=1).min(axis=0)
    low = confidence < 0.9
    assert 0.01 < low.mean() < 0.99  # the threshold does something, not everything
    assert (strict.labels[low] == 255).all()
    assert np.array_equal(strict.labels[~low], plain.labels[~low])


@pytest.mark.slow  # starting the worker processes takes seconds
def test_workers_give_the_same_labels(tmp_path):
    images, scores, _ = write_inputs(tmp_path)
    common = ["crf", str(images), str(scores), "--crf-params", "irn", "--crf-backend", "pydensecrf",
              "--quiet"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "a"), "--crf-workers", "0"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--crf-workers", "2"]) == 0
    for name in PHOTOS:
        assert np.array_equal(read_label(tmp_path / "a" / f"{name}.png"),
                              read_label(tmp_path / "b" / f"{name}.png"))  # fmt: skip


def test_clear_errors_name_the_file(tmp_path, capsys):
    images, scores, data = write_inputs(tmp_path)
    out = ["--out", str(tmp_path / "o"), "--crf-params", "irn", "--crf-workers", "0", "--quiet"]
    os.remove(scores / "astronaut.npz")
    assert main(["crf", str(images), str(scores), *out]) == 1
    err = capsys.readouterr().err
    assert "astronaut" in err and "no scores" in err
    assert not (tmp_path / "o").exists()  # nothing done before the check
    # scores of another size, NaN scores: those images fail (named), the others are written
    image, cams, keys = data["astronaut"]
    np.savez(scores / "astronaut.npz", high_res=cams[:, :-1], keys=keys)
    nan = data["chelsea"][1].copy()
    nan[0, 5, 5] = np.nan
    np.savez(scores / "chelsea.npz", high_res=nan, keys=data["chelsea"][2])
    assert main(["crf", str(images), str(scores), *out]) == 1
    err = capsys.readouterr().err
    assert "astronaut.npz" in err and "size" in err
    assert "chelsea.npz" in err and "NaN" in err
    assert (tmp_path / "o" / "coffee.png").exists()
    assert not (tmp_path / "o" / "chelsea.png").exists()


def test_keys_with_the_background_are_refused(tmp_path):
    cams = np.zeros((2, 4, 4), np.float32)
    np.savez(tmp_path / "x.npz", high_res=cams, keys=np.array([0, 7, 14]))
    with pytest.raises(ValueError, match="x.npz: 3 keys for 2 CAMs.*without the background"):
        load_scores(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", high_res=cams + 2, keys=np.array([7, 14]))
    with pytest.raises(ValueError, match=r"y.npz: CAMs must be in \[0, 1\]"):
        load_scores(tmp_path / "y.npz")
    with pytest.raises(ValueError, match="CAMs need a background"):
        pseudo_label(np.zeros((4, 4, 3), np.uint8), Scores(cams, np.array([7, 14])))


def test_psa_dicts_and_images_without_a_class(tmp_path):
    cams = np.random.default_rng(0).random((2, 6, 5), dtype=np.float32)
    np.save(tmp_path / "psa.npy", {7: cams[0], 14: cams[1]})  # infer_cls.py --out_cam
    scores = load_scores(tmp_path / "psa.npy", allow_pickle=True)
    assert np.array_equal(scores.keys, [7, 14]) and np.array_equal(scores.values, cams)
    assert np.array_equal(scores.classes(), [0, 8, 15])
    # no foreground class (IRN keeps such images): all background, no CRF to run
    empty = Scores(np.zeros((0, 6, 5), np.float32), np.zeros(0, np.int64))
    for name in PSEUDO_LABEL_RECIPES:
        out = pseudo_label(np.zeros((6, 5, 3), np.uint8), empty, PSEUDO_LABEL_RECIPES[name])
        assert (out.labels == 0).all() and out.probs.shape == (2, 1, 6, 5)


def test_the_gpu_path_batches_by_shape(tmp_path):
    """The path ``--device cuda`` takes (images grouped by shape, batched CRF calls), run here
    on the CPU: the same labels as one image at a time, failures still per image."""
    from deeplabv2.crf.pseudo_files import _Job, _on_device

    images, scores, data = write_inputs(tmp_path)
    names = sorted(PHOTOS)
    image_files = [str(images / f"{n}.png") for n in names] * 2  # 2 of each shape
    score_files = [str(scores / f"{n}.npz") for n in names] * 2
    np.savez(scores / "bad.npz", high_res=data["coffee"][1][:, :-1], keys=data["coffee"][2])
    image_files.append(str(images / "coffee.png"))
    score_files.append(str(scores / "bad.npz"))
    job = _Job(PSEUDO_LABEL_RECIPES["irn"], "pydensecrf", 0.0, False, None)
    results = list(_on_device(job, image_files, score_files, range(7), "cpu", batch_size=2))
    assert sorted(r.index for r in results) == list(range(7))
    for result in results:
        if result.index == 6:
            assert "bad.npz" in str(result.error)
            continue
        image, cams, keys = data[names[result.index % 3]]
        assert np.array_equal(result.label.labels, irn_cam_to_ir_label(image, cams, keys))


@pytest.mark.slow  # a CRF of seconds in a worker process, interrupted
@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_signals_stop_the_workers(tmp_path, sig, group):
    """As ``predict``'s CRF workers (tests/test_interrupts.py): exit 143 / 130 at once, no
    worker process, temporary file or output left."""
    images, scores, _ = write_inputs(tmp_path)
    params = tmp_path / "crf.json"
    params.write_text('{"iterations": 200000}')  # minutes: long enough to be interrupted
    out = tmp_path / "labels"
    process = start_in_session(
        ["crf", str(images), str(scores), "--out", str(out), "--crf-params", str(params),
         "--bg-threshold", "0.2", "--crf-workers", "1", "--crf-backend", "pydensecrf", "--quiet"]
    )  # fmt: skip

    def busy() -> None:  # the worker (not spawn's resource tracker) computes: seconds of CPU
        working = lambda: any(cpu_seconds(p) > 6 for p in descendants(process.pid))  # noqa: E731
        wait_for(lambda: working() or process.poll() is not None, timeout=300)

    stop_with(process, sig, group, busy)
    assert not out.exists() or (temporaries(out) == [] and
                                [p.name for p in out.iterdir()] in ([], [RECORD]))  # fmt: skip


# ---- refused inputs (tiny 65x81 images, no worker process) ----


def tiny_inputs(tmp_path: Path, stems=("im0",)) -> tuple[Path, Path]:
    """65x81 random images with IRN-layout CAMs (keys 7, 14)."""
    rng = np.random.default_rng(0)
    images, scores = tmp_path / "images", tmp_path / "cams"
    images.mkdir()
    scores.mkdir()
    for stem in stems:
        Image.fromarray(rng.integers(0, 256, (65, 81, 3), dtype=np.uint8)).save(
            images / f"{stem}.png"
        )
        cams = rng.random((2, 65, 81), dtype=np.float32)
        np.savez(scores / f"{stem}.npz", high_res=cams, keys=np.array([7, 14]))
    return images, scores


@pytest.mark.parametrize("where", ["images", "images/labels", "cams", "cams/x/y"])
def test_out_among_the_inputs_is_refused(tmp_path, capsys, where):
    images, scores = tiny_inputs(tmp_path)
    photo_bytes = (images / "im0.png").read_bytes()
    out = tmp_path / where
    args = ["crf", str(images), str(scores), "--out", str(out), "--crf-params", "irn", "--force",
            "--crf-workers", "0", "--quiet"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "--out" in err and "inside" in err and ("IMAGES_DIR" in err or "SCORES_DIR" in err)
    assert (images / "im0.png").read_bytes() == photo_bytes  # the photo is intact
    assert sorted(p.name for p in images.iterdir()) == ["im0.png"]
    assert sorted(p.name for p in scores.iterdir()) == ["im0.npz"]
    # the same folder by another spelling (a symlink) is refused too
    (tmp_path / "link").symlink_to(images)
    assert main([*args[:3], "--out", str(tmp_path / "link"), *args[5:]]) == 1
    assert (images / "im0.png").read_bytes() == photo_bytes


def test_images_with_the_same_stem_are_refused(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path)
    Image.open(images / "im0.png").save(images / "im0.jpg")
    out = tmp_path / "labels"
    args = ["crf", str(images), str(scores), "--out", str(out), "--crf-params", "irn",
            "--crf-workers", "0", "--quiet"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "im0.jpg" in err and "im0.png" in err and "same name" in err
    assert not out.exists()  # refused before any work


def test_in_memory_scores_are_checked_as_files_are():
    image = np.zeros((6, 5, 3), np.uint8)
    cams = np.random.default_rng(0).random((1, 6, 5), dtype=np.float32)
    irn = PSEUDO_LABEL_RECIPES["irn"]
    bad_cams = {"NaN": np.full_like(cams, np.nan), "NaN or infinite": cams + np.inf,
                "negative": cams - 2, r"in \[0, 1\]": cams + 1}  # fmt: skip
    for message, values in bad_cams.items():
        with pytest.raises(ValueError, match=f"Scores: CAMs.*{message}"):
            pseudo_label(image, Scores(values, np.array([3])), irn)
    for keys in ([300], [-1], [3, 3]):
        with pytest.raises(ValueError, match=r"keys must be distinct class indices in 0\.\.253"):
            Scores(np.concatenate([cams] * len(keys)), np.array(keys))
    with pytest.raises(ValueError, match="2 keys for 1 CAMs"):
        Scores(cams, np.array([3, 4]))
    with pytest.raises(ValueError, match="keys must be a .K,. integer array"):
        Scores(cams, np.array([3.0]))
    with pytest.raises(ValueError, match="scores need at least 2 classes"):
        Scores(cams)
    with pytest.raises(ValueError, match=r"must be a \(C, H, W\) float array"):
        Scores(cams[0])
    with pytest.raises(TypeError, match=r"Scores\(values\).*Scores\(cams, keys\)"):
        pseudo_label(image, cams, irn)  # type: ignore[arg-type]
    # a preset's name is the preset; an unknown name or another type is refused
    by_name = pseudo_label(image, Scores(cams, [3]), "irn", backend="pydensecrf")
    by_value = pseudo_label(image, Scores(cams, [3]), irn, backend="pydensecrf")
    assert np.array_equal(by_name.labels, by_value.labels)
    assert set(np.unique(by_value.labels).tolist()) <= {0, 4, 255}  # CAM 0 is class keys[0] + 1
    with pytest.raises(ValueError, match="PSEUDO_LABEL_RECIPES are irn, psa"):
        pseudo_label(image, Scores(cams, [3]), "IRN")
    with pytest.raises(TypeError, match="PSEUDO_LABEL_RECIPES"):
        pseudo_label(image, Scores(cams, [3]), 0.3)  # type: ignore[arg-type]
    # float16 scores (predict --probs) are taken, as float32
    probs = Scores(np.full((2, 6, 5), 0.5, np.float16))
    assert probs.values.dtype == np.float32 and probs.values.flags.c_contiguous


def test_workers_are_capped_at_the_cores_and_images(tmp_path, capsys, monkeypatch):
    from deeplabv2.cli import crf

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert crf._workers(100000, 3) == 2
    assert "--crf-workers 100000 lowered to 2 (2 usable cores, 3 images" in capsys.readouterr().err
    assert crf._workers(100000, 1) == 1
    assert "lowered to 1" in capsys.readouterr().err
    for requested, images, expected in [(2, 5, 2), (0, 5, 0), (None, 5, 2), (None, 1, 0),
                                        (4, 0, 0)]:  # fmt: skip
        assert crf._workers(requested, images) == expected
    assert capsys.readouterr().err == ""  # nothing lowered: nothing said
    # the CLI asks for the capped number (run here in-process: no worker to start)
    from deeplabv2.crf import pseudo_files

    asked, real = [], pseudo_files.pseudo_label_files

    def in_process(*args, workers, **kwargs):
        asked.append(workers)
        return real(*args, workers=0, **kwargs)

    images, scores = tiny_inputs(tmp_path, stems=("a", "b"))
    monkeypatch.setattr("deeplabv2.crf.pseudo_files.pseudo_label_files", in_process)
    out = tmp_path / "labels"
    assert main(["crf", str(images), str(scores), "--out", str(out), "--crf-params", "irn",
                 "--crf-workers", "100000", "--quiet"]) == 0  # fmt: skip
    assert asked == [2] and "lowered to 2" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "a.png", "b.png"]


def test_classes_beyond_num_classes_fail(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b"))
    np.savez(scores / "b.npz", high_res=np.load(scores / "b.npz")["high_res"], keys=[7, 25])
    out = tmp_path / "labels"
    args = ["crf", str(images), str(scores), "--out", str(out), "--crf-params", "irn",
            "--crf-workers", "0", "--quiet"]  # fmt: skip
    assert main([*args, "--num-classes", "21"]) == 1
    err = capsys.readouterr().err
    assert "b.npz: class 26 is beyond --num-classes 21" in err and "a.npz" not in err
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "a.png"]
    with pytest.raises(SystemExit) as usage:  # out of range: a usage error
        main([*args, "--num-classes", "1"])
    assert usage.value.code == 2
    assert "--num-classes: must be in [2, 255], got 1" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0  # unchecked by default
    assert 26 in read_label(out / "b.png")  # CAM 1 (key 25) labelled 26, as asked


def test_resuming_with_other_settings_is_refused(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b"))
    out = tmp_path / "labels"
    args = ["crf", str(images), str(scores), "--out", str(out), "--crf-workers", "0", "--quiet"]
    assert main([*args, "--crf-params", "irn", "--save-probs"]) == 0
    record = json.loads((out / RECORD).read_text())["settings"]
    assert record["recipe"]["values"] == [0.3, 0.05] and record["save_probs"] is True
    assert record["recipe"]["params"]["bi_xy_std"] == 50 and record["num_classes"] is None
    made = {p.name: p.read_bytes() for p in out.iterdir()}
    changes = {
        ("--crf-params", "psa"): "recipe.params.bi_xy_std: 50 -> 80",
        ("--crf-params", "irn", "--min-confidence", "0.5"): "min_confidence: 0.0 -> 0.5",
        ("--crf-params", "irn", "--num-classes", "21"): "num_classes: None -> 21",
        ("--bg-threshold", "0.2"): "recipe.values: [0.3, 0.05] -> [0.2]",
        ("--crf-params", "irn"): "save_probs: True -> False",
    }
    for options, difference in changes.items():
        assert main([*args, *options]) == 1, options
        err = capsys.readouterr().err
        assert difference in err and "--force" in err and "another --out" in err, err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == made  # nothing written
    assert main([*args, "--crf-params", "irn", "--save-probs"]) == 0  # the same: resumed
    assert "wrote 0 pseudo-labels" in capsys.readouterr().out
    # --force redoes every image, rewrites the record and drops the old probabilities
    (out / "a_probs.npz.keep").write_bytes(b"not ours")
    assert main([*args, "--crf-params", "psa", "--force"]) == 0
    assert "wrote 2 pseudo-labels" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "a.png", "a_probs.npz.keep", "b.png"]
    assert json.loads((out / RECORD).read_text())["settings"]["recipe"]["values"] == [4, 32]
    assert main([*args, "--crf-params", "psa"]) == 0  # resumed under the new record
    # a folder of an older run (no record) is resumed as it was, and gets no record
    (out / RECORD).unlink()
    assert main([*args, "--crf-params", "irn"]) == 0
    assert "wrote 0 pseudo-labels" in capsys.readouterr().out and not (out / RECORD).exists()
    (out / RECORD).write_text("{")
    assert main([*args, "--crf-params", "irn"]) == 1
    assert "unreadable record" in capsys.readouterr().err


def test_score_layout_mistakes_are_named(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path)
    cams = np.load(scores / "im0.npz")["high_res"]
    out = tmp_path / "labels"
    args = ["crf", str(images), str(scores), "--out", str(out), "--crf-workers", "0", "--quiet"]
    np.savez(scores / "im0.npz", high_res=cams)  # keys forgotten
    assert main([*args, "--crf-params", "irn"]) == 1
    assert "IRN CAM file needs both 'high_res'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs both 'high_res'.*'keys'"):
        load_scores(scores / "im0.npz")
    os.remove(scores / "im0.npz")
    scores_hwc = np.random.default_rng(1).random((65, 81, 21), dtype=np.float32)
    np.save(scores / "im0.npy", scores_hwc)  # (H, W, C)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "channels-last" in err and "(C, H, W)" in err and "im0.npy" in err
    np.savez(scores / "x.npz", high_res=cams.transpose(1, 2, 0), keys=[7, 14])
    with pytest.raises(ValueError, match=r"looks channels-last \(H, W, K\)"):
        load_scores(scores / "x.npz")


def test_a_recipe_that_cannot_fit_fails_once_before_any_work(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b", "c"))
    out = tmp_path / "labels"
    args = ["crf", str(images), str(scores), "--out", str(out), "--crf-workers", "0", "--quiet"]
    assert main(args) == 1  # CAMs, no background
    err = capsys.readouterr().err
    assert err.count("CAMs need a background") == 1 and "--bg-threshold" in err
    assert not out.exists()
    # the library names its parameters, the CLI's flags only as such
    with pytest.raises(ValueError, match="recipe=.irn.*CLI: --crf-params irn"):
        pseudo_label(np.zeros((65, 81, 3), np.uint8), load_scores(scores / "a.npz"))
