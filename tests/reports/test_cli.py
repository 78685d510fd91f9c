"""``convlens analyze`` on the seed's examples in every format and on a Keras Applications model."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.reports.conftest import APPLICATIONS, SEED, seed_expected

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_DATA_DIR", str(tmp_path / "data"))
    from app.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("fmt", ["json", "keras", "h5"])
@pytest.mark.parametrize("number", [1, 2, 3])
def test_analyze_prints_the_report_for_every_seed_format(number, fmt):
    expected = seed_expected(number)
    result = runner.invoke(
        cli, ["analyze", str(SEED / f"example{number}.{fmt}")], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    assert f"{expected['totals']['params']:,}" in result.output
    for layer in expected["layers"]:
        assert layer["name"] in result.output
    assert "Findings" in result.output and "Layers" in result.output


@pytest.mark.parametrize("fmt", ["json", "keras", "h5"])
def test_analyze_json_matches_keras(fmt):
    expected = seed_expected(3)
    result = runner.invoke(cli, ["analyze", str(SEED / f"example3.{fmt}"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["total_params"] == expected["totals"]["params"]
    assert [layer["output_shape"] for layer in report["layers"]] == [
        layer["output_shape"] for layer in expected["layers"]
    ]


def test_analyze_writes_the_html_page(tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(cli, ["analyze", str(SEED / "example2.keras"), "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 3


def test_analyze_with_input_shape_override(tmp_path):
    result = runner.invoke(
        cli, ["analyze", str(SEED / "example1.json"), "--json", "--input-shape", "64,64,3"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["input_shapes"] == [[None, 64, 64, 3]]


def test_analyze_a_keras_applications_model(tmp_path):
    expected = json.loads((APPLICATIONS / "vgg16.expected.json").read_text())
    path = tmp_path / "vgg16.json"
    with gzip.open(APPLICATIONS / "vgg16.json.gz", "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    result = runner.invoke(cli, ["analyze", str(path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "138.36M" in result.output  # VGG16: 138,357,544 parameters
    json_result = runner.invoke(cli, ["analyze", str(path), "--json"])
    assert json.loads(json_result.stdout)["summary"]["total_params"] == expected["totals"]["params"]


LOCAL_MISTAKES = {
    # file name, content, the code printed, words of the detail
    "model.json": (b'{"class_name": "Sequential", "config": {"layers": "nope"}}', "invalid_architecture",
                   "config.layers must be a list"),
    "model.keras": (b"not a zip", "unsupported_format", "Received: unrecognised content"),
    "unsafe.json": (json.dumps({"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Lambda", "config": {"name": "l", "function": "print"}}]}}).encode(),
        "unsafe_architecture", "Lambda"),
}


@pytest.mark.parametrize("filename", sorted(LOCAL_MISTAKES))
def test_bad_files_fail_with_a_clear_message_and_no_http_words(tmp_path, filename):
    """``convlens analyze`` talks to no server: its errors name the problem code and what was
    received, never an HTTP status."""
    content, code, words = LOCAL_MISTAKES[filename]
    bad = tmp_path / filename
    bad.write_bytes(content)
    result = runner.invoke(cli, ["analyze", str(bad)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert result.output.startswith(f"error ({code}): "), result.output
    assert words in result.output
    assert "HTTP" not in result.output and not any(f" {status}" in result.output for status in (413, 415, 422))


def test_bad_input_shape_is_a_usage_error():
    result = runner.invoke(cli, ["analyze", str(SEED / "example1.json"), "--input-shape", "a,b"])
    assert result.exit_code == 2
    assert "Received: 'a,b'" in result.output


# -- submit against a running service ---------------------------------------------------------


def test_submit_uploads_and_prints_the_report(live_service):
    result = runner.invoke(
        cli,
        [
            "submit",
            str(SEED / "example3.keras"),
            "--server",
            live_service,
            "--name",
            "submitted example 3",
        ],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    assert f"{seed_expected(3)['totals']['params']:,}" in result.output
    analysis_id = result.output.split("analysis ", 1)[1].split()[0]
    assert f"{live_service}/v1/analyses/{analysis_id}/report.html" in result.output
    import httpx

    page = httpx.get(f"{live_service}/v1/analyses/{analysis_id}/report.html", timeout=30)
    assert page.status_code == 200 and "submitted example 3" in page.text


def test_submit_json_output(live_service):
    result = runner.invoke(
        cli,
        [
            "submit",
            str(SEED / "example1.h5"),
            "--server",
            live_service,
            "--json",
            "--input-shape",
            "64,64,3",
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["analysis"]["report"]["summary"]["input_shapes"] == [[None, 64, 64, 3]]
    assert body["training_run"] is None


def test_submit_follows_a_queued_job_with_a_progress_bar_until_its_deadline(live_service):
    # The service runs without job workers here: the gradient job stays queued.
    result = runner.invoke(
        cli,
        [
            "submit",
            str(SEED / "example2.json"),
            "--server",
            live_service,
            "--measure-gradients",
            "--poll-interval",
            "0.2",
            "--wait-timeout",
            "1.5",
        ],
    )
    assert result.exit_code == 1
    assert "analysis" in result.output and "did not finish within 2 s" in result.output


def test_submit_reads_the_configured_server_without_server_option(live_service, monkeypatch):
    """No --server: the service this machine is configured for (CONVLENS_HOST/PORT, as
    ``convlens serve`` reads them); CONVLENS_SERVER still wins when set."""
    from app.config import get_settings

    host, port = live_service.removeprefix("http://").rsplit(":", 1)
    monkeypatch.delenv("CONVLENS_SERVER", raising=False)
    monkeypatch.delenv("CONVLENS_PUBLIC_URL", raising=False)
    monkeypatch.setenv("CONVLENS_HOST", host)
    monkeypatch.setenv("CONVLENS_PORT", port)
    get_settings.cache_clear()
    result = runner.invoke(cli, ["submit", str(SEED / "example1.json"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["analysis"]["status"] == "succeeded"
    # the configured port is the one used: another one is refused
    monkeypatch.setenv("CONVLENS_PORT", "9")
    get_settings.cache_clear()
    result = runner.invoke(cli, ["submit", str(SEED / "example1.json")])
    assert result.exit_code == 1 and f"could not talk to http://{host}:9" in result.output
    result = runner.invoke(cli, ["submit", str(SEED / "example1.json"), "--json"],
                           env={"CONVLENS_SERVER": live_service})
    assert result.exit_code == 0, result.output


def test_submit_reports_server_problems(live_service, tmp_path):
    bad = tmp_path / "model.json"
    bad.write_text('{"class_name": "Sequential", "config": {"layers": "nope"}}')
    result = runner.invoke(cli, ["submit", str(bad), "--server", live_service])
    assert result.exit_code == 1
    assert "answered 422" in result.output


def test_submit_without_a_server_says_so(tmp_path):
    result = runner.invoke(
        cli, ["submit", str(SEED / "example1.json"), "--server", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1 and "could not talk to http://127.0.0.1:9" in result.output


def _format_shape(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def test_analyze_fits_80_columns_with_keras_connected_to_column(tmp_path):
    """ResNet50 in an 80-column terminal: no line longer than 80, every output shape Keras
    reports on one line, layer names whole, and each layer's inputs listed under "Connected
    to" (an Add lists both of its inputs)."""
    path = tmp_path / "resnet50.json"
    with gzip.open(APPLICATIONS / "resnet50.json.gz", "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    result = runner.invoke(cli, ["analyze", str(path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.startswith("Layer (type)"))
    assert "Connected to" in header and "Output shape" in header and "Param #" in header
    expected = json.loads((APPLICATIONS / "resnet50.expected.json").read_text())
    table = lines[lines.index(header) + 1:]
    rows = {line.split()[0]: line for line in table if line and not line.startswith((" ", "("))}
    for layer in expected["layers"]:
        row = rows[layer["name"]]  # the name whole at the start of its row
        assert _format_shape(layer["output_shape"]) in row
    add = table.index(rows["conv2_block1_add"])
    assert table[add].rstrip().endswith("conv2_block1_0_bn")
    assert table[add + 1].rstrip().endswith("conv2_block1_3_bn")
    assert "(Add)" in table[add + 1]


def test_analyze_stage_table_agrees_with_the_stages_finding(tmp_path):
    path = tmp_path / "resnet50.json"
    with gzip.open(APPLICATIONS / "resnet50.json.gz", "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    result = runner.invoke(cli, ["analyze", str(path)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "5 stages between downsamplings" in result.output
    lines = result.output.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Stages")))
    rows = [line.split() for line in lines[start + 2:start + 8]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5", "head"]
    assert [row[1] for row in rows[:5]] == ["112x112", "56x56", "28x28", "14x14", "7x7"]


@pytest.mark.parametrize("typed", ["image=64,48,3;mask=20x24x1", '{"image": [64, 48, 3], "mask": [20, 24, 1]}'])
def test_analyze_a_two_input_model_with_a_shape_per_input(tmp_path, typed):
    from tests.analysis.builders import two_input_model

    path = tmp_path / "two.json"
    path.write_text(json.dumps(two_input_model()))
    result = runner.invoke(cli, ["analyze", str(path), "--json", "--input-shape", typed])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["input_shapes"] == [[None, 64, 48, 3], [None, 20, 24, 1]]
