"""`edged detect` end to end: real images, a real video, annotated output, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edged.cli import main
from edged.detect import FrameReport

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"


def detect(coco_zoo, *args: str) -> list[str]:
    return ["detect", *args, "--zoo", str(coco_zoo.path), "--variant", "fastestdet-352"]


def test_image_gives_one_json_line_per_frame_in_the_contract(coco_zoo, val_dev, capsys):
    image = val_dev / "images" / "000000002153.jpg"
    assert main([*detect(coco_zoo, str(image)), "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    report = FrameReport.model_validate_json(line)
    assert report.frame == 0 and report.source == image.name and report.variant == "fastestdet-352"
    assert (report.width, report.height) == (640, 480)
    assert "person" in {o.label for o in report.objects}
    for obj in report.objects:
        x1, y1, x2, y2 = obj.box
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 and obj.score >= 0.35
    assert set(json.loads(line)) == {"frame", "source", "variant", "latency_ms", "width", "height", "objects"}


def test_video_is_annotated_frame_for_frame(coco_zoo, tmp_path, capsys):
    out = tmp_path / "annotated.mp4"
    assert main([*detect(coco_zoo, str(DEMO_CLIP)), "--json", "--annotate", str(out), "--max-frames", "12"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [FrameReport.model_validate_json(x).frame for x in lines] == list(range(12))
    assert sum(len(FrameReport.model_validate_json(x).objects) for x in lines) > 12, "vtest is full of pedestrians"
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, frame = capture.read()
    assert ok and frame.shape == (576, 768, 3)


@pytest.mark.parametrize("source, out", [("image", "out.xyz"), ("video", "out.mkv2")])
def test_an_annotation_file_opencv_cannot_write_is_a_clear_error(coco_zoo, val_dev, tmp_path, capsys, source, out):
    path = val_dev / "images" / "000000002153.jpg" if source == "image" else DEMO_CLIP
    assert main([*detect(coco_zoo, str(path)), "--annotate", str(tmp_path / out)]) == 1
    err = capsys.readouterr().err
    assert out in err and ("extension" in err or ".mp4" in err) and "Traceback" not in err


def test_folder_with_a_corrupt_image_reports_it_and_keeps_the_rest(coco_zoo, val_dev, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for image in sorted((val_dev / "images").iterdir())[:3]:
        shutil.copy(image, folder / image.name)
    (folder / "000_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    annotated = tmp_path / "annotated"
    assert main([*detect(coco_zoo, str(folder)), "--json", "--annotate", str(annotated)]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3
    assert "1 of 4 images could not be read" in captured.err and "000_broken.jpg" in captured.err
    written = {p.name for p in annotated.iterdir()}
    assert written == {p.name for p in folder.iterdir()} - {"000_broken.jpg"}


def test_missing_source_and_unreadable_image_are_clear_errors(coco_zoo, tmp_path, capsys):
    assert main(detect(coco_zoo, str(tmp_path / "nothing.jpg"))) == 1
    assert "no such file or directory" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    assert main(detect(coco_zoo, str(bad))) == 1
    err = capsys.readouterr().err
    assert "bad.png: not a readable image" in err and "Traceback" not in err


def test_no_zoo_anywhere_says_how_to_point_at_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGED_ZOO", str(tmp_path / "empty"))
    assert main(["detect", str(DEMO_CLIP)]) == 1
    assert "no model zoo manifest here" in capsys.readouterr().err


def test_bad_threshold_is_a_usage_error(coco_zoo, capsys):
    with pytest.raises(SystemExit) as info:
        main([*detect(coco_zoo, str(DEMO_CLIP)), "--score-threshold", "7"])
    assert info.value.code == 2
    assert "must be between 0 and 1" in capsys.readouterr().err


def test_installed_console_script_runs():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "edged"), "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("edged ")
